"""Reads docker/compose.yaml for tests/integration/test_deploy.sh (run with
/usr/bin/python3: PyYAML and docker-compose's own modules).

  deploy_check.py check RENDERED PROFILE_RENDERED ROOT
      One line per assertion, "ok NAME" or "FAIL NAME<TAB>WHY", about the
      configuration docker-compose rendered (without and with the
      openmeetings profile) and the site configs in ROOT/docker/sites.
  deploy_check.py plan RENDERED IMAGE WORK
      Writes WORK/plan.sh (sourced by the suite) and WORK/hosts: how to run the
      default services as processes in one network namespace, each service
      on its own loopback address named in WORK/hosts, its named volumes and
      tmpfs mounts as directories under WORK, the image's files from IMAGE;
      container paths in commands, environment, health checks and the site
      configs they name are rewritten to those directories.
  deploy_check.py volumes RENDERED
      The mount points of the named volumes of the services built from
      docker/Dockerfile, one a line.
  deploy_check.py closure PACKAGE...
      The installed packages a Debian 12 image with PACKAGE... holds: those,
      the Essential ones, and everything they depend on (dpkg's records of
      this machine, a Debian 12 system).
"""
import json
import os
import re
import shlex
import subprocess
import sys

import yaml

OURS = re.compile(r"^qkd-(network|rtmp|turn):")
PROFILE = "openmeetings"
KME_SERVICES = {"kme-a": "KME_A", "kme-b": "KME_B", "kme-c": "KME_C"}
STAR = ["certs", "qkd-sim-ab", "qkd-sim-ac", "kme-a", "kme-b", "kme-c", "rtmp",
        "encryptor-users", "encryptor-server"]
PROFILE_SERVICES = ["openmeetings", "encryptor-om-users", "encryptor-om-server",
                    "coturn", "encryptor-turn-users", "encryptor-turn-server"]


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def mounts(svc, named):
    """[(source, target, read_only)] of the service's named volumes."""
    out = []
    for v in svc.get("volumes", []):
        if isinstance(v, dict):
            src, dst, ro = v.get("source"), v.get("target"), bool(v.get("read_only"))
        else:
            parts = v.split(":")
            src, dst, ro = parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")
        if src in named:
            out.append((src, dst, ro))
    return out


def config_arg(svc):
    cmd = svc.get("command") or []
    if isinstance(cmd, str):
        cmd = shlex.split(cmd)
    for i, a in enumerate(cmd[:-1]):
        if a == "--config":
            return cmd[i + 1]
    return None


def site_file(root, container_path):
    """docker/sites/<name> for a config the image installs as /etc/qkd/<name>."""
    if not container_path or not container_path.startswith("/etc/qkd/"):
        return None
    p = os.path.join(root, "docker", "sites", os.path.basename(container_path))
    return p if os.path.isfile(p) else None


def health_target(svc):
    """(host, port) the health check asks over HTTP, or (None, None)."""
    test = (svc.get("healthcheck") or {}).get("test") or []
    m = re.search(r"http://([\w.-]+):(\d+)/", " ".join(test))
    return (m.group(1), int(m.group(2))) if m else (None, None)


def long_running(svc):
    return svc.get("restart", "no") != "no"


class Checks:
    def __init__(self):
        self.failed = 0

    def check(self, name, cond, why=""):
        if cond:
            print("ok " + name)
        else:
            self.failed += 1
            print("FAIL %s\t%s" % (name, str(why).replace("\n", " ")))


def profile_activation(c, root):
    """The services `up` starts without and with the profile, by compose's own rules."""
    from docker.errors import NotFound
    from compose.config import config
    from compose.config.environment import Environment
    from compose.project import Project

    class NoDaemon:  # compose asks the daemon about networks: there is none
        def __getattr__(self, name):
            def call(*args, **kwargs):
                raise NotFound(name)
            return call

    d = os.path.join(root, "docker")
    data = config.load(config.find(d, ["compose.yaml"], Environment.from_env_file(d)), True)
    started = {}
    for profiles in ([], [PROFILE]):
        try:
            p = Project.from_config("qkd", data, NoDaemon(), None, None, profiles)
            started[bool(profiles)] = {s.name for s in p.get_services(None, include_deps=True)}
        except Exception as e:  # a dependency outside the active profiles
            c.check("compose resolves the services to start (profiles %s)" % profiles, False, e)
            return
    for s in PROFILE_SERVICES:
        c.check("%s is not started without profile %s" % (s, PROFILE), s not in started[False])
        c.check("%s is started with profile %s" % (s, PROFILE), s in started[True])
    c.check("the star starts without any profile", set(STAR) <= started[False],
            "missing %s" % sorted(set(STAR) - started[False]))


def site_conf(root, svc):
    site = site_file(root, config_arg(svc))
    if not site:
        return {}
    try:
        with open(site, encoding="utf-8") as f:
            return json.load(f)
    except ValueError:
        return {}


def published(svc):
    """The container ports a service publishes, as strings ("3478/tcp" -> "3478")."""
    return [str(p.get("target")) if isinstance(p, dict) else str(p).split(":")[-1].split("/")[0]
            for p in svc.get("ports", [])]


def turn_path(c, services, root):
    """OpenMeetings' TURN URL is the users-side TURN encryptor; the pair ends at coturn."""
    om = services.get("openmeetings", {})
    env = om.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env if "=" in e)
    url = str(env.get("TURN_URL", ""))
    m = re.match(r"^turn:([^:/?]+):(\d+)\?transport=tcp$", url)
    c.check("openmeetings has a TURN URL over TCP (TURN_URL)", m is not None, url)
    c.check("openmeetings has a TURN secret (TURN_PASS)", bool(env.get("TURN_PASS")))
    c.check("openmeetings publishes no port (only its pairs reach it)", not om.get("ports"), om.get("ports"))
    users = services.get("encryptor-turn-users", {})
    server = services.get("encryptor-turn-server", {})
    turn = services.get("coturn", {})
    uconf, sconf = site_conf(root, users), site_conf(root, server)
    port = m.group(2) if m else None
    c.check("the TURN URL's port is published by encryptor-turn-users", port in published(users),
            (port, published(users)))
    c.check("encryptor-turn-users is the users side and listens on the TURN URL's port",
            uconf.get("role") == "users" and uconf.get("listen", "").rsplit(":", 1)[-1] == port, uconf)
    c.check("encryptor-turn-users connects to encryptor-turn-server's listener",
            uconf.get("connect", "") == "encryptor-turn-server:" + sconf.get("listen", ":").rsplit(":", 1)[-1],
            (uconf.get("connect"), sconf.get("listen")))
    cmd = [str(a) for a in (turn.get("command") or [])]
    opts = dict(a[2:].split("=", 1) for a in cmd if a.startswith("--") and "=" in a)
    c.check("coturn runs turnserver", cmd[:1] == ["turnserver"], cmd[:1])
    c.check("coturn listens for TURN over TCP only (--no-udp, --no-tls, --no-dtls)",
            {"--no-udp", "--no-tls", "--no-dtls"} <= set(cmd), cmd)
    c.check("coturn publishes no port (only its pair reaches it)", not turn.get("ports"), turn.get("ports"))
    c.check("encryptor-turn-server is the server side and connects to coturn's TURN port",
            sconf.get("role") == "server" and sconf.get("connect") == "coturn:" + opts.get("listening-port", "3478"),
            (sconf.get("connect"), opts.get("listening-port")))
    c.check("coturn checks the credentials OpenMeetings signs (--use-auth-secret, --static-auth-secret = TURN_PASS)",
            "--use-auth-secret" in cmd and bool(env.get("TURN_PASS"))
            and opts.get("static-auth-secret") == str(env.get("TURN_PASS")))
    ucert = os.path.basename(uconf.get("kme", {}).get("cert", ""))
    scert = os.path.basename(sconf.get("kme", {}).get("cert", ""))
    c.check("the TURN encryptors name each other (peer_sae)",
            bool(ucert) and bool(scert) and uconf.get("peer_sae") + ".pem" == scert
            and sconf.get("peer_sae") + ".pem" == ucert, (uconf.get("peer_sae"), sconf.get("peer_sae")))


def check(rendered, rendered_profile, root):
    c = Checks()
    cfg, cfgp = load(rendered), load(rendered_profile)
    services, named = cfgp.get("services", {}), set((cfgp.get("volumes") or {}).keys())
    for s in STAR + PROFILE_SERVICES:
        c.check("service %s exists" % s, s in services)
    c.check("the rendered config is the same with the profile", cfg.get("services") == services,
            "the profile changed the service definitions")
    profiled = sorted(s for s, d in services.items() if d.get("profiles"))
    c.check("only the openmeetings services carry a profile", profiled == sorted(PROFILE_SERVICES), profiled)
    c.check("their profile is %s" % PROFILE,
            all(services[s].get("profiles") == [PROFILE] for s in profiled if s in services))
    profile_activation(c, root)
    turn_path(c, services, root)

    # Users, health checks, hygiene.
    for name, svc in sorted(services.items()):
        image = str(svc.get("image", ""))
        if OURS.match(image):
            user = str(svc.get("user", ""))
            c.check("%s runs as an unprivileged user" % name,
                    re.match(r"^[1-9][0-9]*(:[1-9][0-9]*)?$", user) is not None, "user [%s]" % user)
            c.check("%s has no core dumps" % name, (svc.get("ulimits") or {}).get("core") in
                    (0, {"soft": 0, "hard": 0}), svc.get("ulimits"))
            c.check("%s drops every capability" % name, svc.get("cap_drop") == ["ALL"])
            c.check("%s has a read-only root" % name, svc.get("read_only") is True)
        else:
            c.check("%s (third-party image) has a pinned tag" % name,
                    re.match(r"^[^:]+:[0-9][\w.-]*$", image) is not None, image)
        if long_running(svc):
            hc = svc.get("healthcheck") or {}
            test = hc.get("test") or []
            c.check("%s has a health check" % name,
                    bool(test) and test[0] in ("CMD", "CMD-SHELL") and not hc.get("disable"), hc)

    # The one-shot certs service: every certificate into the CA volume, and
    # into each daemon's own volume what that daemon may read (--bundle).
    certs = services.get("certs", {})
    c.check("certs is a one-shot service", not long_running(certs))
    cmd = certs.get("command") or []
    cert_mounts = {t: src for src, t, ro in mounts(certs, named) if not ro}
    out = cmd[cmd.index("--out") + 1] if "--out" in cmd else None
    ca_volume = cert_mounts.get(out)
    c.check("certs writes its CAs into a named volume", ca_volume is not None, out)
    kmes = [cmd[i + 1].split(":")[0] for i, a in enumerate(cmd[:-1]) if a == "--kme"]
    saes = [cmd[i + 1] for i, a in enumerate(cmd[:-1]) if a == "--sae"]
    c.check("certs names no SAN for every KME (each names its own site)", "--san" not in cmd)
    sans = {}  # KME ID -> the names its certificates carry
    for i, a in enumerate(cmd[:-1]):
        if a == "--kme":
            kid, _, names = cmd[i + 1].partition(":")
            sans[kid] = set(filter(None, names.split(",")))
    public = {"ca.pem", "sae-ca.pem", "kme-ca.pem", "sae-ca.crl", "kme-ca.crl"}
    bundles = {}  # volume -> (ID, the files it holds)
    for i, a in enumerate(cmd[:-1]):
        if a != "--bundle":
            continue
        bid, _, dest = cmd[i + 1].partition("=")
        vol = cert_mounts.get(dest)
        c.check("certs bundles %s into a named volume (%s)" % (bid, dest), vol is not None and vol != ca_volume)
        if bid in kmes:
            own = {"%s.%s.%s" % (bid, kind, ext) for kind in ("server", "kme") for ext in ("pem", "key")}
        else:
            c.check("bundle %s is an SAE or a KME that certs makes" % bid, bid in saes)
            own = {"%s.pem" % bid, "%s.key" % bid, "%s.p12" % bid}
        bundles[vol] = (bid, own | public)
    for name, svc in sorted(services.items()):
        if name != "certs":
            c.check("%s does not mount the CA volume" % name, ca_volume not in {x[0] for x in mounts(svc, named)})

    # Each service's site config, its files, volumes, ports and health check.
    data_volumes = {}
    for name, svc in sorted(services.items()):
        site = site_file(root, config_arg(svc))
        if config_arg(svc) is None:
            continue
        c.check("%s's config %s is a site config of docker/sites" % (name, config_arg(svc)), site is not None)
        if not site:
            continue
        try:
            with open(site, encoding="utf-8") as f:
                conf = json.load(f)
        except ValueError as e:
            c.check("%s is JSON" % site, False, e)
            continue
        vols = mounts(svc, named)
        targets = {t: s for s, t, ro in vols}
        files = [conf.get(k, {}).get(f) for k, fs in (("sae_tls", ("cert", "key", "client_ca", "client_crl")),
                                                      ("kme_tls", ("cert", "key", "ca", "crl")),
                                                      ("kme", ("cert", "key", "ca"))) for f in fs]
        files = [f for f in files if f]
        cert_vols = {targets.get(os.path.dirname(f)) for f in files}
        c.check("%s reads its certificates from one certs volume" % name, len(cert_vols) == 1, cert_vols)
        for f in files:
            vol = targets.get(os.path.dirname(f))
            held = bundles.get(vol, (None, set()))[1]
            c.check("%s: %s comes from its own bundle" % (name, f), os.path.basename(f) in held,
                    "not in a bundle the certs service makes for this daemon, or volume not mounted")
        if name in KME_SERVICES:
            c.check("%s's bundle is its own" % name, bundles.get(vol, ("",))[0] == KME_SERVICES[name])
        if conf.get("kme"):
            c.check("%s's bundle is that of its SAE" % name,
                    os.path.basename(conf["kme"].get("cert", "")) == "%s.pem" % bundles.get(vol, ("",))[0])
            c.check("%s pins its KME (kme.kme_id)" % name, bool(conf["kme"].get("kme_id")))
            kme_host = re.sub(r"^https://([^:/]+).*$", r"\1", conf["kme"].get("url", ""))
            sae = os.path.basename(conf["kme"].get("cert", ""))[:-len(".pem")]
            saes = site_conf(root, services.get(kme_host, {})).get("saes", [])
            c.check("%s's SAE %s is one of %s's SAEs" % (name, sae, kme_host), sae in saes, saes)
        if conf.get("sae_tls"):
            c.check("%s reads a CRL on both listeners" % name,
                    bool(conf["sae_tls"].get("client_crl")) and bool(conf.get("kme_tls", {}).get("crl")))
        listens = [conf.get(k) for k in ("sae_listen", "kme_listen", "listen") if conf.get(k)]
        for l in listens:
            c.check("%s listens on every interface (%s)" % (name, l), l.startswith("0.0.0.0:"))
        admin = conf.get("admin_listen", "")
        c.check("%s's admin listener is on its own address (its service name)" % name,
                admin.rsplit(":", 1)[0] == name, admin)
        c.check("%s's health check asks its admin listener" % name,
                bool(admin) and health_target(svc) == (name, int(admin.rsplit(":", 1)[1])), health_target(svc))
        listens.append(admin)
        ports = [p.get("target") if isinstance(p, dict) else str(p).split(":")[-1].split("/")[0]
                 for p in svc.get("ports", [])]
        for p in ports:
            c.check("%s publishes a port it listens on (%s)" % (name, p),
                    any(l.rsplit(":", 1)[1] == str(p) for l in listens))
        urls = [l.get("url", "") for l in conf.get("links", [])] + [conf.get("kme", {}).get("url", "")]
        peers = [l.get("peer", "") for l in conf.get("links", [])] + [conf.get("kme", {}).get("kme_id", "")]
        for u, peer in zip(urls, peers):
            if not u:
                continue
            host = re.sub(r"^https://([^:/]+).*$", r"\1", u)
            c.check("%s: %s names a service" % (name, u), host in services)
            c.check("%s: %s's certificates carry the name %s" % (name, peer, host), host in sans.get(peer, set()))
        if name in KME_SERVICES:
            c.check("%s is %s" % (name, KME_SERVICES[name]), conf.get("kme_id") == KME_SERVICES[name])
            dd = conf.get("data_dir")
            src = targets.get(dd)
            c.check("%s mounts a named volume at its data_dir %s" % (name, dd), src is not None)
            c.check("%s's data volume is mounted read-write" % name,
                    any(t == dd and not ro for s, t, ro in vols))
            data_volumes.setdefault(src, []).append(name)
            for link in conf.get("links", []):
                kd = link.get("key_dir", "")
                vol = targets.get(os.path.dirname(kd))
                c.check("%s: key_dir %s is in a named volume" % (name, kd), vol is not None)
                sims = [s for s, d in services.items()
                        if (d.get("command") or [""])[0] == "qkd-sim" and vol in {x[0] for x in mounts(d, named)}]
                c.check("%s: one qkd-sim writes into %s" % (name, kd), len(sims) == 1 and kd in
                        (services[sims[0]].get("command") or []) if sims else False, sims)
                if sims:
                    sim = services[sims[0]]
                    c.check("%s: %s mounts the link volume where the KME does" % (name, sims[0]),
                            (vol, os.path.dirname(kd), False) in mounts(sim, named))
    for vol, users in sorted(data_volumes.items(), key=str):
        c.check("data volume %s belongs to one KME" % vol, vol is not None and len(users) == 1, users)
    c.check("each KME has a data volume", sorted(sum(data_volumes.values(), [])) == sorted(KME_SERVICES))
    return 1 if c.failed else 0


def rewriter(mapping, ip):
    """A function rewriting container paths (longest first) and addresses."""
    keys = sorted(mapping, key=len, reverse=True)
    pat = re.compile(r"(?<![\w./-])(" + "|".join(re.escape(k) for k in keys) + r")(?=[/\"'\s:]|$)")

    addr = re.compile(r"(?<![\d.])(0\.0\.0\.0|127\.0\.0\.1)(?![\d])")

    def rw(text):
        return addr.sub(ip, pat.sub(lambda m: mapping[m.group(1)], text))
    return rw


def plan(rendered, image, work):
    cfg = load(rendered)
    services = {n: s for n, s in cfg["services"].items() if not s.get("profiles")}
    named = cfg.get("volumes") or {}
    order, seen = [], set()

    def visit(n):
        if n in seen:
            return
        seen.add(n)
        for d in sorted(services[n].get("depends_on") or {}):
            visit(d)
        order.append(n)
    for n in sorted(services):
        visit(n)

    lines = ["# Written by deploy_check.py plan: the default services, in start order."]
    hosts = ["127.0.0.1 localhost"]
    dirs = []
    lines.append("SVC_COUNT=%d" % len(order))
    for i, n in enumerate(order):
        s = services[n]
        ip = "127.0.0.%d" % (10 + i)
        hosts.append("%s %s" % (ip, n))
        mapping = {"/etc/qkd": os.path.join(image, "etc/qkd"), "/usr/local": os.path.join(image, "usr/local")}
        for src, dst, ro in mounts(s, named):
            host = os.path.join(work, "vol", (named[src] or {}).get("name", src))
            mapping[dst] = host
            dirs.append("%s 0750" % host)
        for t in s.get("tmpfs", []) or []:
            target, _, opts = t.partition(":")
            host = os.path.join(work, "tmpfs", n + target)
            mapping[target] = host
            mode = re.search(r"mode=([0-7]+)", opts)
            dirs.append("%s %s" % (host, mode.group(1) if mode else "1777"))
        rw = rewriter(mapping, ip)
        cmd = s.get("command") or []
        cmd = [rw(a) for a in (shlex.split(cmd) if isinstance(cmd, str) else cmd)]
        for j, a in enumerate(cmd[:-1]):
            if a == "--config" and os.path.isfile(cmd[j + 1]):  # a site config: rewritten too
                dst = os.path.join(work, "svc", n, os.path.basename(cmd[j + 1]))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                with open(cmd[j + 1], encoding="utf-8") as f:
                    text = rw(f.read())
                with open(dst, "w", encoding="utf-8") as f:
                    f.write(text)
                cmd[j + 1] = dst
        env = s.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        env = ["%s=%s" % (k, rw(str(v))) for k, v in sorted(env.items())]
        test = (s.get("healthcheck") or {}).get("test") or []
        if test[:1] == ["CMD"]:
            health = [rw(a) for a in test[1:]]
        elif test[:1] == ["CMD-SHELL"]:
            health = ["sh", "-c", rw(test[1])]
        else:
            health = []
        deps = ["%s:%s" % (d, (c or {}).get("condition", "service_started"))
                for d, c in sorted((s.get("depends_on") or {}).items())]
        grace = str(s.get("stop_grace_period", "10s"))
        secs = int(re.match(r"^(\d+)s$", grace).group(1)) if re.match(r"^(\d+)s$", grace) else 10
        q = lambda xs: " ".join(shlex.quote(x) for x in xs)
        lines += ["SVC_NAME[%d]=%s" % (i, shlex.quote(n)),
                  "SVC_IP[%d]=%s" % (i, ip),
                  "SVC_USER[%d]=%s" % (i, shlex.quote(str(s.get("user", "")))),
                  "SVC_ONESHOT[%d]=%d" % (i, 0 if long_running(s) else 1),
                  "SVC_GRACE[%d]=%d" % (i, secs),
                  "SVC_CMD_%d=(%s)" % (i, q(cmd)),
                  "SVC_ENV_%d=(%s)" % (i, q(env)),
                  "SVC_HEALTH_%d=(%s)" % (i, q(health)),
                  "SVC_DEPS_%d=(%s)" % (i, q(deps))]
    lines.append("SVC_DIRS=(%s)" % " ".join(shlex.quote(d) for d in sorted(set(dirs))))
    with open(os.path.join(work, "plan.sh"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(work, "hosts"), "w", encoding="utf-8") as f:
        f.write("\n".join(hosts) + "\n")
    return 0


def volumes(rendered):
    cfg = load(rendered)
    named = cfg.get("volumes") or {}
    targets = {t for s in cfg["services"].values() if OURS.match(str(s.get("image", "")))
               for _, t, _ in mounts(s, named)}
    print("\n".join(sorted(targets)))
    return 0


def closure(packages):
    """packages + Essential ones + their Depends and Pre-Depends, transitively."""
    out = subprocess.run(["dpkg-query", "-W", "-f=${Package}\t${Essential}\t${Status}\t${Depends}, "
                          "${Pre-Depends}\t${Provides}\n"], capture_output=True, text=True, check=True).stdout
    deps, providers, essential = {}, {}, []
    for line in out.splitlines():
        name, ess, status, dep, prov = (line.split("\t") + [""] * 5)[:5]
        if not status.endswith(" installed"):
            continue
        deps[name] = dep
        providers.setdefault(name, name)
        for p in filter(None, (x.strip().split(" ")[0] for x in prov.split(","))):
            providers.setdefault(p, name)
        if ess == "yes":
            essential.append(name)

    def pick(group):  # "a (>= 1) | b:any": the first alternative installed here
        for alt in group.split("|"):
            n = alt.strip().split(" ")[0].split(":")[0]
            if n in providers:
                return providers[n]
        return None
    todo, have = list(packages) + essential, set()
    while todo:
        p = todo.pop()
        if p in have or p not in deps:
            continue
        have.add(p)
        todo += [q for q in (pick(g) for g in deps[p].split(",") if g.strip()) if q]
    print("\n".join(sorted(have)))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "volumes":
        sys.exit(volumes(sys.argv[2]))
    if len(sys.argv) >= 2 and sys.argv[1] == "closure":
        sys.exit(closure(sys.argv[2:]))
    if len(sys.argv) == 5 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], sys.argv[3], sys.argv[4]))
    if len(sys.argv) == 5 and sys.argv[1] == "plan":
        sys.exit(plan(sys.argv[2], sys.argv[3], sys.argv[4]))
    sys.exit("usage: deploy_check.py check RENDERED PROFILE_RENDERED ROOT | plan RENDERED IMAGE WORK"
             " | volumes RENDERED | closure PACKAGE...")
