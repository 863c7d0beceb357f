//! One module per dataset layout, each with its statistics and folder tree in its doc comment.

pub mod custom;
pub mod dukemtmc;
pub(crate) mod image_check;
pub(crate) mod layout;
pub mod market1501;
pub mod msmt17;
pub(crate) mod name_pattern;
pub mod occluded_duke;
pub(crate) mod pid_cam_folders;
pub mod vehicleid;
pub mod veri776;
