"""F06 packaging: compose an inference system from chosen F05 models and seal it."""
