"""Commands whose work lives elsewhere: in the shared core (apply, specs, config, env,
push) or in a tool above the parts that composes two of them (consistency:
featureline.cli.consistency; train: featureline.cli.training)."""
