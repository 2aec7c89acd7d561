"""create and restore encrypted to an age X25519 key against the same
unencrypted.
"""
import os
import subprocess

from benchlib.common import BIN, KEYGEN, Scratch, alternate, report, run


def encrypted(big, work, runs):
    """create and restore of the big set encrypted to an age X25519 key,
    against the same unencrypted, alternating; peak RSS."""
    out = os.path.join(work, "enc-out")
    os.makedirs(out, exist_ok=True)
    key = os.path.join(out, "key.txt")
    text = subprocess.run([KEYGEN], check=True, capture_output=True, text=True).stdout
    open(key, "w").write(text)
    recipient = text.splitlines()[0].split(": ")[1]
    plain, sealed = os.path.join(out, "plain.tar.zst"), os.path.join(out, "sealed.tar.zst.age")
    res = alternate(runs, [
        ("create, encrypted (age X25519)", lambda: run([BIN, "create", big, "-o", sealed, "-r", recipient, "--force", "-q"])),
        ("create", lambda: run([BIN, "create", big, "-o", plain, "--force", "-q"])),
    ])
    report("create encrypted vs not", res, [("encrypted / plain", "create, encrypted (age X25519)", "create", 1.05)])
    print(f"  sizes: encrypted {os.path.getsize(sealed)} bytes, plain {os.path.getsize(plain)} bytes")
    scratch = Scratch(work, "enc-restore")

    def settled(argv):
        # The previous restore's writeback must not land in this one.
        subprocess.run(["sync"], check=True)
        return run(argv)

    res = alternate(runs, [
        ("restore, encrypted", lambda: settled([BIN, "restore", sealed, scratch.fresh(), "-i", key, "-q"])),
        ("restore", lambda: settled([BIN, "restore", plain, scratch.fresh(), "-q"])),
    ])
    report("restore encrypted vs not", res, [("encrypted / plain", "restore, encrypted", "restore", 1.05)])
    scratch.remove()
