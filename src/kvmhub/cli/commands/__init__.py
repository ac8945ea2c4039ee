"""One module per command group, named after the noun it acts on."""
