"""Kernel events: the taxonomy, server-sent-event framing, and the LISTEN/NOTIFY fan-out."""
