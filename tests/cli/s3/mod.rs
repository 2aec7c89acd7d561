//! Object storage against a real S3 server on loopback: `s3s-fs` (from
//! crates.io; `.ci/run` installs it). Without it each of these tests
//! passes after writing a `skipped: ...` line that a plain `cargo test`
//! shows (see `support::skip`), unless `SYDRA_ARCHIVE_REQUIRE_S3=1` makes
//! its absence a failure.
//!
//! One concern a file: [`server`] (starting s3s-fs, running the binary
//! against it, reading the bucket's files), [`proxies`] (TCP relays that
//! cut or hold connections), [`bulk`] (large incompressible data dirs and
//! a child's peak RSS); the tests: [`objects`] (one archive as an object:
//! round trip, corruption, access failures, encryption), [`prefixes`]
//! (`ls`, `prune` and incremental chains under a prefix), [`uploads`]
//! (multipart uploads: memory, retries, kills and aborts),
//! [`downloads`] (ranged reads: extract, an object changed mid-read, cut
//! responses), [`watches`] (`watch` through a store that fails or
//! stalls), [`watch_locks`] (one watch a prefix) and [`watch_requests`]
//! (`watch` into a prefix: no request while nothing changes).

mod bulk;
mod downloads;
mod locks;
mod merges;
mod objects;
mod prefixes;
mod proxies;
pub(crate) mod server;
mod uploads;
mod watch_locks;
mod watch_requests;
mod watches;
