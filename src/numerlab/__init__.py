"""numerlab: config-driven experiment runner for the Numerai tournament."""
