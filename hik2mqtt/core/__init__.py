"""Pure logic: decisions and checks that import only the standard library."""
