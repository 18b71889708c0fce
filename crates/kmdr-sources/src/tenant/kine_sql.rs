//! kine_sql driver: in progress.
