"""Authentication and authorisation: principals, roles → capabilities, credentials."""
