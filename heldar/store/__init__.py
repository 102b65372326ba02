"""The store layer: every SQL statement heldar runs lives in this package."""
