"""Small commands that belong to the shared core (apply, specs, env)."""
