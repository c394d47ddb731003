//! Revert: puts objects back the way Git says. The only part that writes to the cluster, so it
//! plans everything before the first write, shows it, asks, and makes each write conditional
//! on the version of the object it was planned from.
//!
//! Per object: a server-side apply of desired with force, under the reconciler's field manager,
//! carrying the `resourceVersion` and `uid` it was planned from (a concurrent change or
//! deletion is a 409: nothing written); then a JSON patch removing the fields Git does not
//! declare that only out-of-band managers own, whose first operation tests the
//! `resourceVersion` the apply returned (a change in between fails it: the change is kept). A
//! missing object is created again by a server-side apply without force, so that someone who
//! created it meanwhile keeps their values. Fields a cluster controller owns (an HPA's
//! replicas) and fields an ignore rule names keep their live value. Nothing is ever deleted.

mod execute;
mod notices;
mod patch;
mod plan;
mod secrets;
mod targets;

pub use execute::{execute, test_hook};
pub use notices::plan_notices;
pub use plan::{Plan, plan_all};
pub use targets::{all, named};
