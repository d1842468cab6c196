"""Single modules of the package, without a pipeline."""
