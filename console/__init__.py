"""What the project's processes show on the terminal: TensorFlow's start-up noise kept out
(``console.quiet_tensorflow``) and long work's progress (``console.progress``). A ground
floor: imports nothing of ours, so stages, phase packages, the runtime and the demo can
all use it."""
