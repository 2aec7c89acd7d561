//! Where archives live: object storage (more to come: local files,
//! atomic publish and cleanup move here).

pub mod s3;
