"""Declarative vendor data (TOML): framing, code maps, units, rates. Holds no logic; loaded by ``mappers.profiles``."""
