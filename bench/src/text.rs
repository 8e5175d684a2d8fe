//! The generator's randomness (a xorshift PRNG) and the scanner-like texts it writes.

/// xorshift64*: small, fast and deterministic; good enough to vary test data.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, zero included).
    pub fn new(seed: u64) -> Rng {
        // SplitMix64 of the seed, so nearby seeds start far apart and the state is never zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// One element of a non-empty slice.
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }
}

const PRODUCTS: &[&str] = &[
    "Apache HTTP Server",
    "OpenSSH",
    "OpenSSL",
    "Microsoft Windows",
    "Microsoft Exchange Server",
    "nginx",
    "PHP",
    "MySQL",
    "PostgreSQL",
    "Oracle Java SE",
    "VMware ESXi",
    "Cisco IOS XE",
    "Samba",
    "ISC BIND",
    "Mozilla Firefox",
    "Google Chrome",
    "Adobe Acrobat Reader",
    "Apache Tomcat",
    "Jenkins",
    "Elasticsearch",
    "Redis",
    "Microsoft SQL Server",
    "Microsoft IIS",
    "Node.js",
    "Python",
    "jQuery",
    "WordPress",
    "Drupal",
    "Exim",
    "Postfix",
];

const FLAWS: &[&str] = &[
    "Remote Code Execution",
    "Denial of Service",
    "Information Disclosure",
    "Privilege Escalation",
    "Cross-Site Scripting",
    "SQL Injection",
    "Authentication Bypass",
    "Buffer Overflow",
    "Use-After-Free",
    "Directory Traversal",
    "Multiple Vulnerabilities",
    "Security Feature Bypass",
    "Out-of-Bounds Read",
    "Integer Overflow",
    "Server-Side Request Forgery",
];

const INFO: &[&str] = &[
    "Version Detection",
    "Service Detection",
    "Installed",
    "Web Server Banner",
    "SSL Certificate Information",
    "Supported Cipher Suites",
    "Remote Host Information",
];

const COMPONENTS: &[&str] =
    &["mod_proxy", "session handler", "TLS handshake", "HTTP/2 stream", "XML parser", "auth module", "libxml2", "zlib"];

const IMPACTS: &[&str] = &[
    "execute arbitrary code with the privileges of the affected service",
    "cause the service to stop responding",
    "read arbitrary files, including configuration files and credentials",
    "bypass authentication and gain administrative access",
    "inject arbitrary script into a user's browser session",
    "disclose potentially sensitive memory contents",
];

/// The fixed texts of one plugin.
pub struct PluginTexts {
    /// `Name`.
    pub name: String,
    /// `Synopsis`.
    pub synopsis: String,
    /// `Description`: 300–800 characters, several lines, with commas and quotes.
    pub description: String,
    /// `Solution`.
    pub solution: String,
    /// `See Also`: one URL per line.
    pub see_also: String,
}

fn version(rng: &mut Rng) -> String {
    format!("{}.{}.{}", rng.below(12), rng.below(30), rng.below(40))
}

/// Texts of a plugin; `informational` ones detect something rather than report a flaw.
pub fn plugin_texts(rng: &mut Rng, informational: bool) -> PluginTexts {
    let product = rng.pick(PRODUCTS);
    let fixed = version(rng);
    let (name, synopsis, sentences) = if informational {
        let what = rng.pick(INFO);
        let sentences = vec![
            format!("Nessus was able to identify {product} on the remote host, by reading its banner, its \"Server\" header, or the package database."),
            format!("The remote service reports \"{product}/{fixed}\", which Nessus records for later checks."),
            "Note that this plugin only reports information; it does not test for any vulnerability, and its output depends on the credentials given to the scan.".to_owned(),
            format!("See the plugin output for the paths, ports, and versions found; a host may run several instances of {product}."),
            "The detection relies on the \"version\" field of the response, which an administrator can change, so the result may be inaccurate.".to_owned(),
        ];
        (format!("{product} {what}"), format!("{product} is installed on the remote host."), sentences)
    } else {
        let flaw = rng.pick(FLAWS);
        let component = rng.pick(COMPONENTS);
        let sentences = vec![
            format!("The version of {product} installed on the remote host is prior to {fixed}. It is, therefore, affected by multiple vulnerabilities as referenced in the vendor's advisory."),
            format!("  - A flaw exists in the \"{component}\" component, which allows a remote, unauthenticated attacker to {}.", rng.pick(IMPACTS)),
            format!("  - An error in how requests are parsed, including \"chunked\" bodies, allows an attacker to {}.", rng.pick(IMPACTS)),
            format!("An attacker can exploit this, via a specially crafted request, to {}.", rng.pick(IMPACTS)),
            "Note that Nessus has not tested for these issues but has instead relied only on the application's self-reported version number.".to_owned(),
        ];
        (
            format!("{product} < {fixed} {flaw}"),
            format!("The remote host is affected by a {} vulnerability.", flaw.to_lowercase()),
            sentences,
        )
    };
    let description = paragraph(rng, &sentences, 300, 800);
    let solution = if informational {
        "n/a".to_owned()
    } else {
        format!(
            "Upgrade to {product} version {fixed} or later, or apply the vendor's patch.\nIf an upgrade is not possible, restrict access to the service, as described in the advisory."
        )
    };
    let see_also = (0..rng.between(1, 3))
        .map(|_| format!("http://www.nessus.org/u?{:08x}", rng.next_u64() as u32))
        .collect::<Vec<_>>()
        .join("\n");
    PluginTexts { name, synopsis, description, solution, see_also }
}

/// Sentences wrapped at about 70 columns (as Nessus wraps them), cycled until the text is between
/// `min` and `max` characters long.
fn paragraph(rng: &mut Rng, sentences: &[String], min: usize, max: usize) -> String {
    let target = rng.between(min, max);
    let mut out = String::with_capacity(max + 80);
    let mut column = 0;
    for sentence in sentences.iter().cycle() {
        if out.len() >= target {
            break;
        }
        if !out.is_empty() {
            out.push_str(if rng.below(3) == 0 { "\n\n" } else { "\n" });
            column = 0;
        }
        // A bullet keeps its indent; the wrapping below would drop it.
        let body = match sentence.strip_prefix("  ") {
            Some(rest) => {
                out.push_str("  ");
                column = 2;
                rest
            }
            None => sentence.as_str(),
        };
        let mut fresh = true;
        for word in body.split(' ') {
            if !fresh && column + 1 + word.len() > 70 {
                out.push('\n');
                column = 0;
            } else if !fresh {
                out.push(' ');
                column += 1;
            }
            out.push_str(word);
            column += word.len();
            fresh = false;
        }
    }
    // End on a full sentence when one ends late enough.
    if out.len() > target
        && let Some(end) = [". ", ".\n"].iter().filter_map(|p| out[..target].rfind(p)).max().filter(|&i| i + 1 >= min)
    {
        out.truncate(end + 1);
        return out;
    }
    cut(out, min, target)
}

/// Shortens `text` to at most `target` bytes at a word boundary, keeping at least `min` (the
/// texts are ASCII, so any byte is a char boundary).
fn cut(mut text: String, min: usize, target: usize) -> String {
    if text.len() > target {
        let end = text[..target].rfind([' ', '\n']).filter(|&i| i >= min).unwrap_or(target);
        text.truncate(end);
    }
    text
}

const BINARIES: &[&str] = &["httpd", "sshd", "openssl", "php-fpm", "mysqld", "java", "node", "python3", "smbd"];
const CIPHERS: &[&str] =
    &["DES-CBC3-SHA", "ECDHE-RSA-DES-CBC3-SHA", "RC4-MD5", "AES128-SHA", "AES256-SHA", "ECDHE-RSA-AES128-SHA"];

/// The `Plugin Output` of one finding: 50 to `max` characters (at least 50), mostly short, some
/// multi-line.
pub fn plugin_output(rng: &mut Rng, name: &str, host: &str, port: &str, max: usize) -> String {
    let max = max.max(50);
    // Squared uniform: short outputs are common, long ones rare, as in real exports.
    let u = rng.unit();
    let target = 50 + (u * u * (max - 50) as f64) as usize;
    let mut out = String::with_capacity(target + 120);
    if rng.below(10) < 4 {
        out.push_str(&format!("{name} was detected on {host}"));
        while out.len() < target {
            let fragment = match rng.below(4) {
                0 => format!(" (port {port}, version {})", version(rng)),
                1 => ", according to the banner returned by the service".to_owned(),
                2 => format!(", installed under /opt/{}", rng.pick(BINARIES)),
                _ => {
                    format!(", last updated {}-{:02}-{:02}", 2015 + rng.below(10), 1 + rng.below(12), 1 + rng.below(28))
                }
            };
            out.push_str(&fragment);
        }
        out.push('.');
    } else {
        out.push('\n');
        while out.len() < target {
            let fragment = match rng.below(5) {
                0 => format!(
                    "  Path              : /usr/sbin/{}\n  Installed version : {}\n  Fixed version     : {}\n",
                    rng.pick(BINARIES),
                    version(rng),
                    version(rng)
                ),
                1 => format!("  URL               : http://{host}:{port}/{}\n", rng.pick(BINARIES)),
                2 => format!("  {} 0x00, 0x{:02X} RSA RSA 3DES-CBC(168) SHA1\n", rng.pick(CIPHERS), rng.below(256)),
                3 => format!("\nThe remote service answered \"{}\" to a request for '/'.\n", rng.pick(PRODUCTS)),
                _ => format!(
                    "  - Process \"{}\" (pid {}) listens on {port}\n",
                    rng.pick(BINARIES),
                    100 + rng.below(60_000)
                ),
            };
            out.push_str(&fragment);
        }
    }
    cut(out, 50, max)
}
