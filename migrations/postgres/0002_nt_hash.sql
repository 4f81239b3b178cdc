-- A login may keep only the NT hash of its password (MS-CHAPv2 and PAP
-- work with it, CHAP does not).

ALTER TABLE logins DROP CONSTRAINT logins_password_type_check;
ALTER TABLE logins ADD CONSTRAINT logins_password_type_check
    CHECK (password_type IN ('cleartext', 'nt_hash'));
