//! The library and the Rocket application in process, one test binary with a module per
//! feature (the end-to-end tests of the real binaries are in the `tests` package).

mod config;
mod database;
mod http;
mod writer;
