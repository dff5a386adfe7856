-- pushgw_accept (002) has not been called since accept became a binary COPY
-- inside one transaction (gateway/store/postgres.py, _accept_tx): drop it so
-- the schema holds only what the code uses.
DROP FUNCTION IF EXISTS pushgw_accept;
