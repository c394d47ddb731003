//! The only place that talks to the API server: context resolution, the client, and requests.

pub mod cache;
mod client;
pub mod discovery;
mod error;
pub mod kubeconfig;
pub mod openapi;
pub mod watcher;

pub use client::{
    Cluster, ConnectOptions, Impersonation, LiveObject, Target, USER_AGENT, WatchEvent,
    WatchStream, connect,
};
pub use error::ClusterError;
