//! Where archives live: a path, stdin/stdout or an object; atomic publish
//! of local files, temporary paths removed on errors and signals, and the
//! S3 client.

pub mod cleanup;
pub mod crypt;
pub mod dir;
pub mod location;
pub mod lock;
pub mod pool;
pub mod publish;
pub mod retention;
pub mod s3;
pub mod verified;
