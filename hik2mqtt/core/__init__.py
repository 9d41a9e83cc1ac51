"""Pure logic: decisions, checks and message types that import only the standard library."""
