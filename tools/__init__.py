"""Developer scripts that are not part of the visrec package (run from the repository root)."""
