"""Storage policy: retention planning, disk figures, segment locks."""
