#!/usr/bin/env python3
"""Generate the benchmark's message corpus, deterministically.

Owns: writing N messages (default 2,000) of 1 KB-200 KB with realistic
headers into a cache folder; the same seed always gives the same bytes.
Never: reads anything but its arguments, or writes outside the folder given.

The mix follows a small server's inbox: mailing lists (List-Id, Precedence,
addressed to the list), personal mail, spam, machine notifications (a code
forge, cron, bounces) and invoices with base64 PDF attachments.  About a
third of the messages are MIME multipart.  Every message starts with an
mbox postmark (`From sender  date`), as an MTA hands it to procmail, and a
few bodies hold `From ` lines so that mbox escaping is exercised.

Usage: gen_msgs.py OUTDIR [COUNT] [SEED]   (standard library only)
       gen_msgs.py --big FILE BYTES [SEED]   one message of exactly BYTES
       bytes (a short text part and a base64 attachment), for bench/rss.sh
"""

import base64
import math
import os
import random
import sys

ME = "alice@postroom.example"
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
          "Oct", "Nov", "Dec"]

# (list name, host, how procmailrc routes it)
LISTS = [
    ("debian-devel", "lists.debian.example"),     # ^TO_ -> mbox
    ("linux-kernel", "vger.kernel.example"),      # ^TO_ -> mbox
    ("rust-users", "lists.rust-lang.example"),    # List-Id MATCH -> Maildir
    ("postroom-dev", "lists.postroom.example"),   # List-Id MATCH (+ c copy)
    ("announce", "lists.postroom.example"),       # List-Id MATCH
    ("fediverse-ops", "lists.fedi.example"),      # List-Id MATCH
    ("lug-berlin", "lists.lug.example"),          # ^List-Id -> MH
]
PEOPLE = [
    ("Bob Marley", "bob@postroom.example"),
    ("Carol Jones", "carol@example.com"),
    ("Dmitri Ivanov", "dmitri@mail.example.net"),
    ("Priya Raman", "priya.raman@uni.example.edu"),
    ("Mum", "mum@family.example"),
    ("Boss Person", "boss@postroom.example"),
    ("Erik Larsen", "erik@hosting.example"),
    ("Fatima Zahra", "fatima@example.org"),
]
SPAM_FROM = ["promo@winbig.xyz", "offers@deals-4-you.top", "noreply@crypto-gain.click",
             "support@secure-bank-verify.example", "lucky@lottery-intl.loan",
             "newsletter@shop.example"]
SPAM_SUBJ = ["You are a WINNER!!!", "Cheap viagra online", "Casino bonus: 500 free spins",
             "Crypto profit guaranteed", "Free money waiting for you!!!",
             "Your account will be suspended", "Lottery claim notice",
             "Limited time offer just for you"]
WORDS = ("the of and to in is it that for on with as was at by be this are from "
         "or have an they which one you had not but what all were when we there can "
         "delivery mailbox lock queue folder server message header body rcfile recipe "
         "kernel patch release build test review merge branch commit thread list "
         "meeting tomorrow please thanks regards update schedule budget invoice").split()


def date(rng):
    day = rng.randint(1, 28)
    wd = DAYS[(day + 2) % 7]
    return "%s, %d %s 2026 %02d:%02d:%02d +0000" % (
        wd, day, MONTHS[10], rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59))


def postmark(rng, sender):
    day = rng.randint(1, 28)
    return "From %s  %s Nov %2d %02d:%02d:%02d 2026\n" % (
        sender, DAYS[(day + 2) % 7], day, rng.randint(0, 23), rng.randint(0, 59),
        rng.randint(0, 59))


def received(rng, hops):
    out = []
    for i in range(hops):
        a = "mx%d.relay%d.example" % (rng.randint(1, 9), rng.randint(1, 99))
        ip = "192.0.2.%d" % rng.randint(1, 254)
        qid = "%X" % rng.getrandbits(40)
        out.append("Received: from %s (%s [%s])\n\tby %s (Postfix) with ESMTPS id %s\n"
                   "\tfor <%s>; %s\n" % (a, a, ip, "mx.postroom.example" if i == 0 else a,
                                         qid, ME, date(rng)))
    return "".join(out)


def dkim(rng, domain):
    b = base64.b64encode(rng.randbytes(192)).decode()
    bh = base64.b64encode(rng.randbytes(32)).decode()
    lines = [b[i:i + 70] for i in range(0, len(b), 70)]
    return ("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=%s; s=sel1;\n"
            "\th=from:to:subject:date:message-id; bh=%s;\n\tb=%s\n"
            % (domain, bh, "\n\t ".join(lines)))


def msgid(rng, domain):
    return "<%x.%x@%s>" % (rng.getrandbits(48), rng.getrandbits(24), domain)


def text(rng, size, from_lines=False):
    """Plain text paragraphs of about `size` bytes."""
    out, n = [], 0
    while n < size:
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 14))]
        line = " ".join(words).capitalize() + "."
        if from_lines and rng.random() < 0.02:
            line = "From " + line  # mbox escaping is exercised
        if rng.random() < 0.12:
            line += "\n"  # paragraph break
        out.append(line)
        n += len(line) + 1
    return "\n".join(out) + "\n"


def b64part(rng, size):
    raw = rng.randbytes(max(1, size * 3 // 4))
    return base64.encodebytes(raw).decode()


def body_for(rng, size, kind, subject):
    """Return (content headers, body) for a body of about `size` bytes."""
    r = rng.random()
    if kind == "invoice" or (kind in ("personal", "list") and r < 0.18):
        bnd = "=_mixed_%x" % rng.getrandbits(40)
        name = ("invoice-%05d.pdf" % rng.randint(1, 99999)) if kind == "invoice" else \
            rng.choice(["notes.txt.gz", "photo.jpg", "slides.pdf", "patch.tar.gz"])
        ctype = "application/pdf" if name.endswith(".pdf") else "application/octet-stream"
        intro = text(rng, min(1500, size // 8 + 200), from_lines=True)
        att = b64part(rng, max(512, size - len(intro) - 600))
        body = ("This is a multi-part message in MIME format.\n\n--%s\n"
                "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
                "%s\n--%s\nContent-Type: %s; name=\"%s\"\n"
                "Content-Disposition: attachment; filename=\"%s\"\n"
                "Content-Transfer-Encoding: base64\n\n%s\n--%s--\n"
                % (bnd, intro, bnd, ctype, name, name, att, bnd))
        return ("MIME-Version: 1.0\nContent-Type: multipart/mixed;\n boundary=\"%s\"\n" % bnd,
                body)
    if kind == "spam" or r < 0.33:
        bnd = "=_alt_%x" % rng.getrandbits(40)
        plain = text(rng, size // 3)
        if kind == "spam":
            plain += "Click here to claim. Act now, limited time. Unsubscribe now.\n"
        html = "<html><body><p>%s</p></body></html>\n" % text(rng, size // 3).replace(
            "\n\n", "</p>\n<p>")
        body = ("--%s\nContent-Type: text/plain; charset=utf-8\n"
                "Content-Transfer-Encoding: 8bit\n\n%s\n--%s\n"
                "Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
                "%s\n--%s--\n" % (bnd, plain, bnd,
                                  base64.encodebytes(html.encode()).decode(), bnd))
        return ("MIME-Version: 1.0\nContent-Type: multipart/alternative;\n"
                " boundary=\"%s\"\n" % bnd, body)
    if kind == "spam":
        return ("Content-Type: text/html; charset=iso-8859-1\n",
                "<html>%s Click here! Act now!</html>\n" % text(rng, size))
    body = text(rng, size, from_lines=True)
    if kind == "list" and r < 0.45:
        body = "Thanks alice for the patch.\n\n" + body
    if kind == "personal" and r < 0.5:
        sig = base64.encodebytes(rng.randbytes(228)).decode()
        body = ("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n%s"
                "-----BEGIN PGP SIGNATURE-----\n\n%s-----END PGP SIGNATURE-----\n"
                % (body, sig))
    return ("MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8; format=flowed\n"
            "Content-Transfer-Encoding: 8bit\n", body)


def message(rng, i):
    size = int(math.exp(rng.uniform(math.log(1024), math.log(196 * 1024))))
    r = rng.random()
    kind = ("list" if r < 0.45 else "personal" if r < 0.65 else "spam" if r < 0.80
            else "notify" if r < 0.90 else "invoice")
    h = []
    if kind == "list":
        name, host = rng.choice(LISTS)
        who, addr = rng.choice(PEOPLE)
        subj = "[%s] %s" % (name, " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))))
        if rng.random() < 0.2 and name == "postroom-dev":
            subj = "[postroom-dev] release 0.%d.%d tagged" % (rng.randint(1, 9), rng.randint(0, 9))
        sender = "%s-bounces@%s" % (name, host)
        h.append(postmark(rng, sender))
        h.append("Return-Path: <%s>\n" % sender)
        h.append(received(rng, rng.randint(3, 6)))
        h.append(dkim(rng, host))
        h.append("From: %s <%s>\n" % (who, addr))
        to = "%s@%s" % (name, host)
        if rng.random() < 0.25:
            h.append("To: %s\nCc: %s\n" % (ME, to))
        else:
            h.append("To: %s\n" % to)
        h.append("List-Id: %s discussion <%s.%s>\n" % (name, name, host))
        h.append("List-Unsubscribe: <mailto:%s-request@%s?subject=unsubscribe>\n" % (name, host))
        h.append("List-Post: <mailto:%s>\nPrecedence: list\n" % to)
        h.append("Sender: \"%s\" <%s>\n" % (name, sender))
    elif kind == "personal":
        who, addr = rng.choice(PEOPLE)
        subj = rng.choice(["Re: ", "", "Fwd: ", ""]) + " ".join(
            rng.choice(WORDS) for _ in range(rng.randint(2, 7)))
        if who == "Boss Person" and rng.random() < 0.5:
            subj = "URGENT: " + subj
        h.append(postmark(rng, addr))
        h.append("Return-Path: <%s>\n" % addr)
        h.append(received(rng, rng.randint(2, 4)))
        if rng.random() < 0.6:
            h.append(dkim(rng, addr.split("@")[1]))
        h.append("From: %s <%s>\nTo: Alice <%s>\n" % (who, addr, ME))
        if rng.random() < 0.3:
            h.append("Cc: %s <%s>\n" % rng.choice(PEOPLE))
    elif kind == "spam":
        addr = rng.choice(SPAM_FROM)
        subj = rng.choice(SPAM_SUBJ)
        h.append(postmark(rng, addr))
        h.append("Return-Path: <%s>\n" % addr)
        h.append(received(rng, rng.randint(1, 3)))
        h.append("From: \"Special Offers\" <%s>\n" % addr)
        h.append("To: %s\n" % ("undisclosed-recipients:;" if rng.random() < 0.4 else ME))
        if rng.random() < 0.5:
            h.append("X-Spam-Flag: YES\nX-Spam-Level: %s\n" % ("*" * rng.randint(5, 15)))
        elif rng.random() < 0.5:
            h.append("X-Spam-Level: %s\n" % ("*" * rng.randint(0, 4)))
        h.append("X-Mailer: %s\n" % rng.choice(["BulkMailer Pro 7", "Mass Sender", "Outlook"]))
    elif kind == "notify":
        r2 = rng.random()
        if r2 < 0.6:
            repo = rng.choice(["postroom", "mail-parser", "procmail-tests", "dotfiles"])
            addr = "notifications@forge.example"
            subj = "[alice/%s] %s (#%d)" % (repo, " ".join(
                rng.choice(WORDS) for _ in range(4)), rng.randint(1, 999))
            h.append(postmark(rng, "noreply@forge.example"))
            h.append("Return-Path: <noreply@forge.example>\n")
            h.append(received(rng, 2))
            h.append("From: %s <%s>\nTo: alice/%s <%s@noreply.forge.example>\nCc: %s\n"
                     % (rng.choice(PEOPLE)[0], addr, repo, repo, ME))
            h.append("List-Id: alice/%s <%s.alice.forge.example>\n" % (repo, repo))
            h.append("X-Forge-Reason: %s\n" % rng.choice(["review_requested", "mention",
                                                          "subscribed", "author"]))
        elif r2 < 0.8:
            addr = "root@vm.postroom.example"
            subj = "Cron <root@vm> /usr/local/sbin/backup --nightly"
            h.append(postmark(rng, "root@vm.postroom.example"))
            h.append(received(rng, 1))
            h.append("From: root@vm.postroom.example (Cron Daemon)\nTo: %s\n" % ME)
            h.append("X-Cron-Env: <SHELL=/bin/sh>\nX-Cron-Env: <HOME=/root>\n")
        else:
            addr = "MAILER-DAEMON@mx.postroom.example"
            subj = "Undelivered Mail Returned to Sender"
            h.append(postmark(rng, "MAILER-DAEMON"))
            h.append(received(rng, 1))
            h.append("From: MAIL DELIVERY SYSTEM <%s>\nTo: %s\n" % (addr, ME))
            h.append("Auto-Submitted: auto-replied\n")
    else:  # invoice
        vendor = rng.choice(["hosting.example", "power-co.example", "telco.example"])
        addr = "billing@" + vendor
        subj = "Your invoice %s-%05d" % (vendor.split(".")[0].upper(), rng.randint(1, 99999))
        h.append(postmark(rng, addr))
        h.append("Return-Path: <%s>\n" % addr)
        h.append(received(rng, rng.randint(2, 4)))
        h.append(dkim(rng, vendor))
        h.append("From: Billing <%s>\nTo: %s\n" % (addr, ME))
    h.append("Subject: %s\n" % subj)
    h.append("Date: %s\n" % date(rng))
    if not (kind == "spam" and rng.random() < 0.5):
        h.append("Message-ID: %s\n" % msgid(rng, "postroom.example"))
    if subj.startswith("Re: "):
        h.append("In-Reply-To: %s\n" % msgid(rng, "example.com"))
    hdr = "".join(h)
    ctype, body = body_for(rng, max(200, size - len(hdr) - 200), kind, subj)
    data = hdr + ctype + "\n" + body
    if len(data) < 1024:  # keep to the 1 KB floor
        data += text(rng, 1024 - len(data))
    return data.encode("utf-8")


def big(path, size, seed):
    """Write one message of exactly `size` bytes to `path`, in chunks."""
    rng = random.Random(seed)
    bnd = "=_big_%x" % rng.getrandbits(40)
    head = (postmark(rng, "carol@example.com") + "Return-Path: <carol@example.com>\n"
            + received(rng, 3) + "From: Carol Jones <carol@example.com>\n"
            "To: Alice <%s>\nSubject: the big file\nDate: %s\nMessage-ID: %s\n"
            "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"%s\"\n\n"
            "--%s\nContent-Type: text/plain\n\nHere it is.\n\n--%s\n"
            "Content-Type: application/octet-stream; name=\"disk.img\"\n"
            "Content-Disposition: attachment; filename=\"disk.img\"\n"
            "Content-Transfer-Encoding: base64\n\n"
            % (ME, date(rng), msgid(rng, "example.com"), bnd, bnd, bnd)).encode()
    tail = ("--%s--\n" % bnd).encode()
    left = size - len(head) - len(tail)
    if left < 0:
        sys.exit("gen_msgs: %d bytes is too small for a big message" % size)
    with open(path, "wb") as f:
        f.write(head)
        while left > 0:
            chunk = base64.encodebytes(rng.randbytes(57 * 20000))[:left]
            if len(chunk) == left and not chunk.endswith(b"\n"):
                chunk = chunk[:-1] + b"\n"  # the closing boundary needs its own line
            f.write(chunk)
            left -= len(chunk)
        f.write(tail)


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "--big":
        big(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 20261126)
        return
    if len(sys.argv) < 2:
        sys.exit("usage: gen_msgs.py OUTDIR [COUNT] [SEED]")
    out = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 20261126
    rng = random.Random(seed)
    os.makedirs(out, exist_ok=True)
    total = 0
    for i in range(count):
        data = message(rng, i)
        total += len(data)
        with open(os.path.join(out, "%04d.eml" % i), "wb") as f:
            f.write(data)
    print("gen_msgs: %d messages, %.1f MB in %s" % (count, total / 1e6, out))


if __name__ == "__main__":
    main()
