//! Integration tests: the real binary, through real kubectl, against the real control plane
//! from `tests/testenv` (one per test binary, one namespace per test where objects are made).

mod argo_chart;
mod argo_helm;
mod blame;
mod cli;
mod completion;
mod context;
mod defaults;
mod demo;
mod diff;
mod discovery;
mod faults;
mod fixture;
mod fleet;
mod flux;
mod hardening;
mod helm;
mod helm_create;
mod helm_post_render;
mod helm_repository;
mod hostile;
mod krew;
mod openapi;
mod partial;
mod privilege;
mod render_cache;
mod revert;
mod sops;
mod stamp;
mod support;
mod trace;
mod watch;
