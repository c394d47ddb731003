//! Integration tests: the real binary, through real kubectl, against the real control plane
//! from `tests/testenv` (one per test binary, one namespace per test where objects are made).

mod blame;
mod cli;
mod context;
mod diff;
mod fixture;
mod openapi;
mod stamp;
mod support;
mod trace;
mod watch;
