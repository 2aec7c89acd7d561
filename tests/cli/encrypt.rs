//! Encrypted archives (age): round trips with each kind of recipient and
//! a passphrase, refusals without the right key, tampered and truncated
//! ciphertext, stock decryption, reports without paths, encrypted chains.
//! The SSH keys in `support/` are test keys made for these tests only.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use age::secrecy::ExposeSecret;

use crate::support::*;

/// A new age identity in a file, and its recipient.
fn age_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let id = age::x25519::Identity::generate();
    let path = dir.join(name);
    fs::write(&path, format!("{}\n", id.to_string().expose_secret())).unwrap();
    (path, id.to_public().to_string())
}

fn support(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cli/support")
        .join(name)
}

/// The private test keys must not be readable by others for OpenSSH, but
/// age reads them whatever their mode; copies keep the tree clean.
fn ssh_key(dir: &Path, kind: &str) -> (PathBuf, String) {
    let key = dir.join(format!("{kind}.key"));
    fs::copy(support(&format!("test-{kind}.key")), &key).unwrap();
    let public = fs::read_to_string(support(&format!("test-{kind}.pub"))).unwrap();
    (key, public.trim().to_string())
}

fn sha256_of(p: &Path) -> String {
    hex(&sha256(&fs::read(p).unwrap()))
}

#[test]
fn every_kind_of_recipient_round_trips() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let plain = t.path().join("plain.tar.zst");
    create(&data, &plain);
    let want_list = stdout(&run(&["list", "--sha256", p(&plain)]));
    let want_tree = tree_digest(&data);
    let (age_id, age_r) = age_key(t.path(), "age.txt");
    let (ed_id, ed_r) = ssh_key(t.path(), "ed25519");
    let (rsa_id, rsa_r) = ssh_key(t.path(), "rsa");
    let recipients = t.path().join("recipients.txt");
    fs::write(&recipients, format!("# backups\n{ed_r}\n\n{rsa_r}\n")).unwrap();
    let pass = t.path().join("pass.txt");
    fs::write(&pass, "correct horse battery staple\n").unwrap();

    let cases: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        ("x25519", vec!["-r", &age_r], vec!["-i", p(&age_id)]),
        (
            "ssh-ed25519",
            vec!["-R", p(&recipients)],
            vec!["-i", p(&ed_id)],
        ),
        (
            "ssh-rsa",
            vec!["-R", p(&recipients)],
            vec!["-i", p(&rsa_id)],
        ),
        (
            "passphrase",
            vec!["--passphrase-file", p(&pass)],
            vec!["--passphrase-file", p(&pass)],
        ),
    ];
    for (kind, enc, dec) in cases {
        let a = t.path().join(format!("{kind}.tar.zst.age"));
        let mut args = vec!["create", p(&data), "-o", p(&a), "--json"];
        args.extend(&enc);
        let o = run(&args);
        expect_code(&o, 0);
        let j = json(&o);
        // What is stored: the ciphertext's SHA-256 and size.
        assert_eq!(j["sha256"], sha256_of(&a), "{kind}");
        assert_eq!(j["bytes"], fs::metadata(&a).unwrap().len(), "{kind}");
        assert!(
            fs::read(&a)
                .unwrap()
                .starts_with(b"age-encryption.org/v1\n")
        );
        let with = |verb: &[&str]| {
            let mut v = verb.to_vec();
            v.extend(&dec);
            run(&v)
        };
        expect_code(&with(&["verify", p(&a)]), 0);
        expect_code(&with(&["verify", "--quick", p(&a)]), 0);
        assert_eq!(
            stdout(&with(&["list", "--sha256", p(&a)])),
            want_list,
            "{kind}"
        );
        let r = t.path().join(format!("r-{kind}"));
        expect_code(&with(&["restore", p(&a), p(&r), "-q"]), 0);
        assert_eq!(tree_digest(&r), want_tree, "{kind}");
        let m = t.path().join(format!("m-{kind}"));
        expect_code(&with(&["extract", p(&a), "MANIFEST", "-o", p(&m)]), 0);
        assert_eq!(
            fs::read(&m).unwrap(),
            fs::read(data.join("MANIFEST")).unwrap()
        );
        // From a pipe too.
        let mut v = vec!["verify", "-"];
        v.extend(&dec);
        expect_code(&run_stdin(&v, &fs::read(&a).unwrap()), 0);
    }
    // The identity file can come from the environment.
    let a = t.path().join("x25519.tar.zst.age");
    let o = bin()
        .args(["verify", p(&a)])
        .env("SYDRA_ARCHIVE_IDENTITY_FILE", &age_id)
        .output()
        .unwrap();
    expect_code(&o, 0);
}

#[test]
fn without_the_right_key_nothing_is_read() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let (_, r) = age_key(t.path(), "mine.txt");
    let (other, _) = age_key(t.path(), "other.txt");
    let a = t.path().join("a.tar.zst.age");
    expect_code(&run(&["create", p(&data), "-o", p(&a), "-r", &r, "-q"]), 0);
    let target = t.path().join("r");
    for (args, says) in [
        (
            vec!["verify", p(&a)],
            "is encrypted (age, to X25519 recipients); give --identity",
        ),
        (vec!["restore", p(&a), p(&target)], "give --identity"),
        (vec!["list", p(&a)], "give --identity"),
        (vec!["extract", p(&a), "-C", p(&target)], "give --identity"),
        (vec!["verify", p(&a), "-i", p(&other)], "no identity given"),
        (
            vec!["restore", p(&a), p(&target), "-i", p(&other)],
            "no identity given",
        ),
    ] {
        let o = run(&args);
        expect_code(&o, 2);
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
        assert!(!target.exists(), "{args:?}");
    }
    // Bad keys and recipients are refused before anything is written.
    let out = t.path().join("b.tar.zst.age");
    let o = run(&["create", p(&data), "-o", p(&out), "-r", "age1nope"]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("not an age recipient"),
        "{}",
        stderr(&o)
    );
    let pass = t.path().join("pass");
    fs::write(&pass, "x\n").unwrap();
    let o = run(&[
        "create",
        p(&data),
        "-o",
        p(&out),
        "-r",
        &r,
        "--passphrase-file",
        p(&pass),
    ]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("cannot be combined"), "{}", stderr(&o));
    assert!(!out.exists());
}

/// Where age's payload starts: after the header's MAC line and the
/// 16-byte nonce.
fn payload_start(b: &[u8]) -> usize {
    let mac = b.windows(4).position(|w| w == b"\n---").unwrap() + 1;
    let eol = mac + b[mac..].iter().position(|&c| c == b'\n').unwrap() + 1;
    eol + 16
}

#[test]
fn tampered_or_truncated_ciphertext_is_refused_and_restores_nothing() {
    let t = tempfile::tempdir().unwrap();
    let data = medium_data(t.path());
    let (id, r) = age_key(t.path(), "key.txt");
    let a = t.path().join("a.tar.zst.age");
    expect_code(&run(&["create", p(&data), "-o", p(&a), "-r", &r, "-q"]), 0);
    let good = fs::read(&a).unwrap();
    let start = payload_start(&good);
    let chunk = 64 * 1024 + 16;
    let chunks = (good.len() - start).div_ceil(chunk);
    assert!(chunks >= 3, "{chunks} chunks");
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    // The header's MAC, a byte of the first, a middle and the last chunk.
    let mac = good.windows(4).position(|w| w == b"\n---").unwrap() + 6;
    for (what, at) in [
        ("the header's MAC", mac),
        ("the first chunk", start + 10),
        ("a middle chunk", start + chunk * (chunks / 2) + 100),
        ("the last chunk", good.len() - 3),
    ] {
        let mut b = good.clone();
        b[at] ^= 0x01;
        cases.push((what.to_string(), b));
    }
    // Cut at chunk boundaries (the first ones, one in the middle, the
    // last), and a byte either side of each.
    let mut ks = vec![1, 2, chunks / 2, chunks - 1];
    ks.dedup();
    for k in ks {
        let at = start + k * chunk;
        for cut in [at - 1, at, at + 1] {
            cases.push((format!("cut at {cut}"), good[..cut].to_vec()));
        }
    }
    cases.push(("cut in the header".into(), good[..start - 5].to_vec()));
    // Every other chunk boundary, checked by verify alone.
    let bad = t.path().join("cut.tar.zst.age");
    for k in 1..chunks {
        fs::write(&bad, &good[..start + k * chunk]).unwrap();
        let o = run(&["verify", p(&bad), "-i", p(&id)]);
        assert_eq!(code(&o), 1, "cut at chunk {k}: {}", stderr(&o));
    }
    let target = t.path().join("r");
    let bad = t.path().join("bad.tar.zst.age");
    for (what, bytes) in cases {
        fs::write(&bad, &bytes).unwrap();
        let o = run(&["verify", p(&bad), "-i", p(&id)]);
        assert_eq!(code(&o), 1, "{what}: {}", stderr(&o));
        let o = run(&["restore", p(&bad), p(&target), "-i", p(&id)]);
        assert_eq!(code(&o), 1, "{what}: {}", stderr(&o));
        assert!(stderr(&o).contains("corrupt"), "{what}: {}", stderr(&o));
        assert!(!target.exists(), "{what}");
        assert!(leftovers(t.path()).is_empty(), "{what}");
    }
}

#[test]
fn the_crate_s_own_decryptor_gives_the_archive_back() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let (id, r) = age_key(t.path(), "key.txt");
    let a = t.path().join("a.tar.zst.age");
    expect_code(&run(&["create", p(&data), "-o", p(&a), "-r", &r, "-q"]), 0);
    let decrypt = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debug/examples/age-decrypt");
    let built = Command::new(env!("CARGO"))
        .args(["build", "-q", "--example", "age-decrypt"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(built.success());
    let plain = Command::new(&decrypt)
        .arg(&id)
        .stdin(fs::File::open(&a).unwrap())
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    // The plaintext is the archive: stock tar reads it, and verify -.
    let x = t.path().join("x");
    fs::create_dir(&x).unwrap();
    let mut tar = Command::new("tar")
        .args(["--zstd", "-xf", "-", "-C", p(&x)])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    tar.stdin.take().unwrap().write_all(&plain.stdout).unwrap();
    assert!(tar.wait().unwrap().success());
    let d = Command::new("diff")
        .args(["-r", p(&data), p(&x)])
        .output()
        .unwrap();
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stdout));
    expect_code(&run_stdin(&["verify", "-"], &plain.stdout), 0);
}

#[test]
fn reports_of_an_encrypted_archive_name_no_file() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    fs::write(data.join("stray-name-secret"), b"x").unwrap();
    let (_, r) = age_key(t.path(), "key.txt");
    let a = t.path().join("a.tar.zst.age");
    let o = run(&["create", p(&data), "-o", p(&a), "-r", &r, "--json"]);
    expect_code(&o, 0);
    let text = stdout(&o);
    for needle in [
        "wal/",
        "segments/",
        "MANIFEST",
        "tags.json",
        "stray-name-secret",
    ] {
        assert!(!text.contains(needle), "{needle} in {text}");
    }
    assert_eq!(json(&o)["encrypted"], true);
}

#[test]
fn an_encrypted_chain_restores_as_a_full_archive_would() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let (id, r) = age_key(t.path(), "key.txt");
    let shelf = t.path().join("shelf");
    fs::create_dir(&shelf).unwrap();
    let a0 = shelf.join("a0.tar.zst.age");
    expect_code(&run(&["create", p(&data), "-o", p(&a0), "-r", &r, "-q"]), 0);
    let mut server = small_server(&data);
    server.run(1800).unwrap();
    let a1 = shelf.join("a1.tar.zst.age");
    let o = run(&[
        "create",
        p(&data),
        "-o",
        p(&a1),
        "--base",
        p(&a0),
        "-r",
        &r,
        "-i",
        p(&id),
        "-q",
    ]);
    expect_code(&o, 0);
    let ri = t.path().join("ri");
    expect_code(&run(&["restore", p(&a1), p(&ri), "-i", p(&id), "-q"]), 0);
    let f = t.path().join("f.tar.zst");
    create(&data, &f);
    let rf = t.path().join("rf");
    expect_code(&run(&["restore", p(&f), p(&rf), "-q"]), 0);
    assert_eq!(tree_digest(&ri), tree_digest(&rf));
    expect_code(&run(&["verify", "--chain", p(&a1), "-i", p(&id)]), 0);
    // Without the key, the base cannot be used either.
    let o = run(&[
        "create",
        p(&data),
        "-o",
        p(&shelf.join("a2.tar.zst.age")),
        "--base",
        p(&a1),
        "-r",
        &r,
    ]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("give --identity"), "{}", stderr(&o));
}

/// The work factor of the scrypt stanza of an age header: `-> scrypt
/// <salt> <log2 N>`, the only stanza of a passphrase file.
fn scrypt_work_factor(age_file: &[u8]) -> u8 {
    let header = &age_file[..age_file.windows(4).position(|w| w == b"\n---").unwrap()];
    let stanzas: Vec<&str> = std::str::from_utf8(header)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("-> "))
        .collect();
    assert_eq!(stanzas.len(), 1, "{stanzas:?}");
    let args: Vec<&str> = stanzas[0].split(' ').collect();
    assert_eq!(args[..2], ["->", "scrypt"], "{stanzas:?}");
    assert_eq!(args.len(), 4, "{stanzas:?}");
    args[3].parse().unwrap()
}

#[test]
fn a_passphrase_chain_lists_and_restores_with_the_chosen_work_factor() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let pass = t.path().join("pass.txt");
    fs::write(&pass, "correct horse battery staple\n").unwrap();
    let shelf = t.path().join("shelf");
    fs::create_dir(&shelf).unwrap();
    let mut server = small_server(&data);
    // A full archive and two incrementals, each on the one before.
    let mut prev: Option<PathBuf> = None;
    for i in 0..3 {
        let a = shelf.join(format!("a{i}.tar.zst.age"));
        let mut args = vec!["create", p(&data), "-o", p(&a), "-q"];
        args.extend(["--passphrase-file", p(&pass)]);
        if let Some(b) = &prev {
            args.extend(["--base", p(b)]);
        }
        expect_code(&run(&args), 0);
        // Chosen, not calibrated: what the reader's cap (20) accepts.
        assert_eq!(scrypt_work_factor(&fs::read(&a).unwrap()), 18, "a{i}");
        if i < 2 {
            server.run(1800).unwrap();
        }
        prev = Some(a);
    }
    let last = prev.unwrap();
    let with_pass = |verb: &[&str]| {
        let mut v = verb.to_vec();
        v.extend(["--passphrase-file", p(&pass)]);
        run(&v)
    };
    // As a full archive of the same data lists and restores.
    let f = t.path().join("f.tar.zst");
    create(&data, &f);
    let o = with_pass(&["list", "--sha256", p(&last)]);
    expect_code(&o, 0);
    assert_eq!(stdout(&o), stdout(&run(&["list", "--sha256", p(&f)])));
    let (ri, rf) = (t.path().join("ri"), t.path().join("rf"));
    expect_code(&with_pass(&["restore", p(&last), p(&ri), "-q"]), 0);
    expect_code(&run(&["restore", p(&f), p(&rf), "-q"]), 0);
    assert_eq!(tree_digest(&ri), tree_digest(&rf));
    expect_code(
        &with_pass(&["verify", "--chain", "--read-data", "-q", p(&last)]),
        0,
    );
    // Without the passphrase, refused.
    let o = run(&["list", p(&last)]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("passphrase"), "{}", stderr(&o));
}

#[test]
fn review_findings_stay_fixed() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let (id, r) = age_key(t.path(), "key.txt");
    let shelf = t.path().join("shelf");
    fs::create_dir(&shelf).unwrap();
    let a0 = shelf.join("a0.tar.zst.age");
    expect_code(&run(&["create", p(&data), "-o", p(&a0), "-r", &r, "-q"]), 0);
    // An incremental of an encrypted chain is never written in plaintext.
    let a1 = shelf.join("a1.tar.zst");
    let o = run(&[
        "create",
        p(&data),
        "-o",
        p(&a1),
        "--base",
        p(&a0),
        "-i",
        p(&id),
    ]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("encrypt the incremental too"),
        "{}",
        stderr(&o)
    );
    assert!(!a1.exists());
    // A key file that is a FIFO is refused, not waited on.
    let fifo = t.path().join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let o = run_bounded(&["verify", p(&a0), "-i", p(&fifo)]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
    // An encrypted archive through a pipe that is not stdin.
    let o = bin()
        .args(["verify", "/dev/stdin", "-i", p(&id)])
        .stdin(fs::File::open(&a0).unwrap())
        .output()
        .unwrap();
    expect_code(&o, 0);
    // Never staged in the temporary directory as plaintext.
    let o = run(&["extract", p(&a0), "MANIFEST", "-o", "-", "-i", p(&id)]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("use -o FILE or -C DIR"),
        "{}",
        stderr(&o)
    );
    // A create that fails writes no age stream that decrypts cleanly.
    // (A FIFO among the segments fails the walk after HEAD and MANIFEST
    // were written: the header is out, the stream must stay unfinished.)
    let bad_data = medium_data(t.path());
    let hour = fs::read_dir(bad_data.join("segments"))
        .unwrap()
        .last()
        .unwrap()
        .unwrap()
        .path();
    assert!(
        Command::new("mkfifo")
            .arg(hour.join("zz.seg"))
            .status()
            .unwrap()
            .success()
    );
    let o = run_bounded(&["create", p(&bad_data), "-o", "-", "-r", &r]);
    expect_code(&o, 2);
    assert!(!o.stdout.is_empty(), "the age header was written first");
    assert!(
        !decrypts(&o.stdout, &id),
        "a failed run left a clean age stream"
    );
}

/// Whether the age crate decrypts `ct` whole with the identity in `key`.
fn decrypts(ct: &[u8], key: &Path) -> bool {
    use std::io::Read;
    let ids = age::IdentityFile::from_file(key.to_str().unwrap().to_string())
        .unwrap()
        .into_identities()
        .unwrap();
    let Ok(d) = age::Decryptor::new(ct) else {
        return false;
    };
    let Ok(mut r) = d.decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity)) else {
        return false;
    };
    let mut out = Vec::new();
    r.read_to_end(&mut out).is_ok()
}
