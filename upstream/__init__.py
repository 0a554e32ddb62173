"""The upstream phases F02–F05, as this project reads them (see upstream.reader)."""
