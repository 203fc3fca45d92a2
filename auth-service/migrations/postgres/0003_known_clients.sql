-- Clients from which an account has logged in successfully, by the key the
-- throttle counts them under (an IPv4 address or an IPv6 network). A known
-- client is not held back by the account-wide lock, which an attacker
-- elsewhere can keep up; its own account+client delays still apply.
CREATE TABLE known_clients (
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client     TEXT   NOT NULL,
    -- Unix seconds of the latest successful login from this client.
    last_login BIGINT NOT NULL,
    PRIMARY KEY (user_id, client)
);
CREATE INDEX known_clients_last_login ON known_clients (last_login);
