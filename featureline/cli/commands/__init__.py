"""Commands whose work lives elsewhere: in the shared core (apply, specs, config, env,
push) or in a tool that composes parts (consistency: featureline.cli.consistency)."""
