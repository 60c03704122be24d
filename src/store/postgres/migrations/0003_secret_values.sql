-- Per-user values of a secret: one sealed value per subject (an end user's id), removed with
-- the secret.
CREATE TABLE secret_values (
    secret_id  text NOT NULL REFERENCES secrets (id) ON DELETE CASCADE,
    subject    text NOT NULL,
    sealed     text NOT NULL,
    updated_at text NOT NULL,
    PRIMARY KEY (secret_id, subject)
);
