-- Security (issue 14): sources (client addresses) that have logged in to an account, so a locked account
-- still admits its owner from a place it was seen before (the lockout of a username cannot lock the admin
-- out for good), and the key fingerprint that sealed the secrets at rest.
CREATE TABLE login_trusted_sources (
    user_id         text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    source          text NOT NULL,
    last_success_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, source)
);
