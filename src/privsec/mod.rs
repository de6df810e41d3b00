//! The privacy core of the seed's `core.privsec`: keys and vault, audit log, local-only guard,
//! lockdown's state.

pub mod audit;
pub mod datakeys;
pub mod guard;
pub mod keycheck;
pub mod keyring;
pub mod lockdown;
pub mod vault;
