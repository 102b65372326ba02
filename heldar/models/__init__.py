"""Pydantic models of heldar's resources (requests and views)."""
