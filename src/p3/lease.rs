//! This instance's name, which its streams' slots carry when they live by
//! the instance's lease ([`crate::machine::instance::InstanceLease`]; the
//! subscription connection renews it, see [`super::link`]).

use spin_sdk7::wasip3;

thread_local! {
    /// Random, made once per instance.
    static NAME: String = format!("{:016x}", wasip3::random::random::get_random_u64());
}

/// This instance's name, for [`crate::machine::Opening::instance`].
pub fn name() -> String {
    NAME.with(String::clone)
}
