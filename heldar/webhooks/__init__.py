"""Webhooks: HMAC signing, the SSRF guard, delivery with capped retries, and the notifier sweep."""
