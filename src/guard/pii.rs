//! PII redaction: emails, phone numbers, profile URLs and the candidate's own name, email and
//! handle, replaced by stable placeholders (`[EMAIL_1]`, `[PHONE_1]`, `[URL_1]`,
//! `[CANDIDATE_NAME]`, `[CANDIDATE_EMAIL]`, `[CANDIDATE_HANDLE]`).
//!
//! Design choices, each one a trade between leaking PII and destroying gradable content:
//!
//! * **Emails**: any `local@domain.tld`, plus the obfuscated `name [at] host [dot] com` form
//!   (brackets or parentheses required, so "look at the data" never matches).
//! * **Phones** are found by a loose digit-run pattern and then *validated*, because interview
//!   answers are full of numbers: `+` international numbers with 8-15 digits; US
//!   `(415) 555-0132` / `415-555-0132` / `415.555.0132` (optionally `1-` first); European
//!   national numbers that start with a trunk `0` and have 9-12 digits in separated groups
//!   (`020 7946 0958`, `06 12 34 56 78`, `0151 23456789`). A bare run of 7-15 digits, or a
//!   local `555-0132`, counts only after a phone word (phone, call, mobile, tel, WhatsApp...).
//!   Versions (`3.11.4`), dates (`2024-01-15`), IPs, token counts (`128000`, `1,000,000`),
//!   latencies (`200 ms`) and prices fail these shapes or are followed by a unit.
//! * **URLs** are PII when they identify a person: profile hosts (LinkedIn, GitHub, GitLab,
//!   Bitbucket, Twitter/X, Medium, Kaggle, Hugging Face user pages, Stack Overflow users,
//!   dev.to, Substack...), personal-hosting domains (`*.github.io`, `*.netlify.app`,
//!   `*.vercel.app`, about.me, linktr.ee...), any URL that contains the candidate's name or
//!   handle, and any URL introduced as the candidate's own ("my site", "my blog", "portfolio",
//!   "homepage"). A GitHub URL is redacted even when it names an organisation's repository:
//!   an owner cannot be told apart from a person. Documentation and paper URLs
//!   (`https://docs.python.org/...`, arxiv) are kept: they are content, not identity.
//! * **The candidate's name** (from the ATS payload or the request): the full name, each
//!   part alone (first, last, middle, both halves of a hyphenated part), cheap nickname forms
//!   from a small table (Alex for Alexander, Bob for Robert...), case-insensitively, with
//!   diacritics folded both ways (José = Jose), on word boundaries ("Ann" never hits
//!   "announce"); a possessive keeps its `'s`. A part that is also a common English word
//!   (Will, May, Grace, Mark...) is matched only capitalized and not at a sentence start, so
//!   "we will ship" stays. Parts shorter than two letters are ignored.
//!
//! Same value → same placeholder within one redaction session (one submission); counts are
//! reported by kind, never values. Placeholders match no pattern, so redaction is idempotent.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use regex::Regex;

use crate::domain::Candidate;

use super::GuardError;

/// The kinds of PII counted in reports (`guard.pii_by_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PiiKind {
    Email,
    Phone,
    Url,
    Name,
    Handle,
}

impl PiiKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::Url => "url",
            PiiKind::Name => "name",
            PiiKind::Handle => "handle",
        }
    }
}

struct Statics {
    email: Regex,
    email_obfuscated: Regex,
    phone: Regex,
    url: Regex,
    us: Regex,
    eu: Regex,
    local: Regex,
    phone_context: Regex,
    unit_after: Regex,
    personal_context: Regex,
}

fn compile(pattern: &str) -> Result<Regex, GuardError> {
    Regex::new(pattern).map_err(|e| GuardError::Pattern(e.to_string()))
}

fn statics() -> Result<&'static Statics, GuardError> {
    static S: OnceLock<Result<Statics, GuardError>> = OnceLock::new();
    S.get_or_init(|| {
        Ok(Statics {
            email: compile(r"(?i)\b[a-z0-9][a-z0-9._%+\-]*@[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)*\.[a-z]{2,}\b")?,
            email_obfuscated: compile(r"(?i)\b[a-z0-9][a-z0-9._%+\-]*\s*[\[(\{]\s*at\s*[\])\}]\s*[a-z0-9\-]+(?:\s*[\[(\{]\s*dot\s*[\])\}]\s*[a-z0-9\-]+)+")?,
            // Loose: an optional `+`, then digits with separators; validated in code.
            phone: compile(r"\+?\(?\d[\d\s().\-]{5,22}\d")?,
            url: compile(r"(?i)\b(?:https?://|www\.)[^\s<>\[\]{}]+|\b(?:[a-z0-9\-]+\.)+(?:com|org|net|io|dev|me|co|app|ai|page|site|xyz|info|ee|sh)/[^\s<>\[\]{}]*")?,
            us: compile(r"^(?:1[\s.\-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.\-])\d{3}[\s.\-]\d{4}$")?,
            eu: compile(r"^(?:\(0\)|0)\d{1,4}(?:[\s.\-/]?\d{2,8}){1,5}$")?,
            local: compile(r"^\d{3}[\s.\-]\d{4}$")?,
            phone_context: compile(r"(?i)\b(?:phone|tel|telephone|call|calls|mobile|cell|whatsapp|signal|text me|sms|reach me|number|fax)\b[^.!?\n]{0,30}$")?,
            unit_after: compile(r"(?i)^\s?(?:ms|s|sec|secs|seconds|min|minutes|h|hours|tokens?|k|m|b|gb|mb|kb|tb|%|usd|eur|gbp|rps|qps|tps|req|requests|rows|docs|documents|chunks|users|params|parameters|x)\b")?,
            personal_context: compile(r"(?i)\b(?:my|personal|own)\s+(?:web\s?site|site|blog|home\s?page|page|portfolio|profile|cv|resume|résumé|linkedin|github|twitter)\b|\bportfolio\b|\b(?:find|reach|follow|contact)\s+me\b")?,
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Hosts whose paths identify an account.
const PROFILE_HOSTS: &[&str] = &[
    "linkedin.com",
    "github.com",
    "gitlab.com",
    "bitbucket.org",
    "twitter.com",
    "x.com",
    "medium.com",
    "kaggle.com",
    "huggingface.co",
    "stackoverflow.com",
    "dev.to",
    "substack.com",
    "facebook.com",
    "instagram.com",
    "mastodon.social",
    "threads.net",
    "bsky.app",
    "youtube.com",
    "gist.github.com",
];

/// Hosts where a site is a person's own.
const PERSONAL_HOSTS: &[&str] = &[
    "github.io",
    "gitlab.io",
    "netlify.app",
    "vercel.app",
    "pages.dev",
    "about.me",
    "linktr.ee",
    "wordpress.com",
    "blogspot.com",
    "notion.site",
    "hashnode.dev",
    "carrd.co",
    "wixsite.com",
    "substack.com",
];

/// Name parts that are also everyday words: matched only capitalized, mid-sentence.
const COMMON_WORDS: &[&str] = &[
    "will", "may", "mark", "grace", "hope", "faith", "joy", "rose", "bill", "art", "chase", "rich",
    "frank", "sue", "pat", "sunny", "june", "april", "august", "dawn", "summer", "autumn", "amber",
    "ruby", "pearl", "ray", "max", "dean", "drew", "gene", "glen", "guy", "jack", "jay", "lane",
    "lee", "long", "miles", "nick", "page", "penny", "price", "rob", "rod", "rusty", "sandy",
    "stone", "ward", "wade", "west", "white", "young", "king", "brown", "green", "black", "hall",
    "wood", "hill", "bell", "cook", "baker", "carter", "fisher", "hunter", "mason", "porter",
    "rivers", "golden", "wolf", "fox", "crane", "swift", "may", "don", "ken", "ted", "chuck",
    "ben", "tom", "sam", "dick", "doug", "hunt", "kent", "love", "low", "case", "cash", "field",
    "gray", "grey", "lord", "noble", "park", "read", "reed", "rust", "shell", "small", "strong",
    "wells", "bird", "lamb", "snow", "storm", "star", "sky", "river", "lake", "sage", "echo",
    "nova", "august", "major", "bishop",
];

/// Cheap nickname forms: full given name → short forms.
const NICKNAMES: &[(&str, &[&str])] = &[
    ("alexander", &["alex", "sasha", "xander"]),
    ("alexandra", &["alex", "sasha", "lexi"]),
    ("robert", &["rob", "bob", "bobby", "robbie"]),
    ("william", &["will", "bill", "billy", "liam"]),
    ("elizabeth", &["liz", "beth", "eliza", "lizzie", "betty"]),
    ("katherine", &["kate", "katie", "kathy", "kat"]),
    ("catherine", &["cathy", "kate", "cat"]),
    ("michael", &["mike", "mikey", "mick"]),
    ("christopher", &["chris", "topher"]),
    ("christina", &["chris", "tina"]),
    ("jonathan", &["jon", "jonny"]),
    ("nicholas", &["nick", "nicky"]),
    ("daniel", &["dan", "danny"]),
    ("joseph", &["joe", "joey"]),
    ("thomas", &["tom", "tommy"]),
    ("james", &["jim", "jimmy", "jamie"]),
    ("richard", &["rick", "rich", "richie"]),
    ("margaret", &["maggie", "meg", "peggy"]),
    ("jennifer", &["jen", "jenny"]),
    ("samuel", &["sam", "sammy"]),
    ("samantha", &["sam", "sammy"]),
    ("benjamin", &["ben", "benny"]),
    ("matthew", &["matt"]),
    ("andrew", &["andy", "drew"]),
    ("anthony", &["tony"]),
    ("edward", &["ed", "eddie", "ted"]),
    ("patricia", &["pat", "trish", "patty"]),
    ("stephen", &["steve"]),
    ("steven", &["steve"]),
    ("timothy", &["tim", "timmy"]),
    ("zachary", &["zach", "zack"]),
    ("jessica", &["jess", "jessie"]),
    ("rebecca", &["becky", "becca"]),
    ("victoria", &["vicky", "tori"]),
    ("gregory", &["greg"]),
    ("kenneth", &["ken", "kenny"]),
    ("ronald", &["ron", "ronnie"]),
    ("donald", &["don", "donnie"]),
    ("charles", &["charlie", "chuck"]),
    ("david", &["dave", "davey"]),
    ("susan", &["sue", "susie"]),
    ("deborah", &["deb", "debbie"]),
    ("jacob", &["jake"]),
    ("joshua", &["josh"]),
    ("nathan", &["nate"]),
    ("nathaniel", &["nate", "nat"]),
    ("abigail", &["abby"]),
    ("alejandro", &["alex"]),
    ("francesca", &["fran", "frankie"]),
    ("francisco", &["paco", "fran"]),
    ("giuseppe", &["beppe", "peppe"]),
    ("dmitri", &["dima"]),
    ("dmitry", &["dima"]),
    ("aleksandr", &["sasha", "alex"]),
    ("yekaterina", &["katya"]),
    ("ekaterina", &["katya"]),
    ("mohammed", &["mo"]),
    ("muhammad", &["mo"]),
];

/// Folds Latin diacritics to ASCII (lower case), so a name given as "José" also finds "Jose"
/// and the other way round.
pub fn fold(c: char) -> char {
    let l = c.to_lowercase().next().unwrap_or(c);
    match l {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => 'a',
        'ç' | 'ć' | 'č' | 'ĉ' => 'c',
        'ď' | 'đ' => 'd',
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => 'e',
        'ğ' | 'ģ' => 'g',
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => 'i',
        'ķ' => 'k',
        'ł' | 'ľ' | 'ļ' | 'ĺ' => 'l',
        'ñ' | 'ń' | 'ň' | 'ņ' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => 'o',
        'ř' | 'ŕ' => 'r',
        'ś' | 'š' | 'ş' | 'ș' | 'ß' => 's',
        'ť' | 'ţ' | 'ț' => 't',
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' | 'ų' => 'u',
        'ý' | 'ÿ' => 'y',
        'ž' | 'ź' | 'ż' => 'z',
        other => other,
    }
}

fn folded(s: &str) -> String {
    s.chars().map(fold).collect()
}

/// A regex fragment matching `part` with every letter in either its accented or its folded
/// form, and a hyphen or space between hyphenated halves.
fn name_fragment(part: &str) -> String {
    let mut out = String::new();
    for c in part.chars() {
        if c == '-' || c == '\'' || c == '’' {
            out.push_str(r"[\-\s'’]?");
            continue;
        }
        let f = fold(c);
        let mut alts: Vec<char> = Vec::new();
        for ch in [c.to_lowercase().next().unwrap_or(c), f] {
            if !alts.contains(&ch) {
                alts.push(ch);
            }
        }
        // Every accented letter that folds to `f`, so an ASCII name finds its accented form.
        if f.is_ascii_alphabetic() {
            for cand in ACCENTED {
                if fold(*cand) == f && !alts.contains(cand) {
                    alts.push(*cand);
                }
            }
        }
        if alts.len() == 1 {
            out.push_str(&regex::escape(&alts[0].to_string()));
        } else {
            out.push('[');
            for a in alts {
                out.push_str(&regex::escape(&a.to_string()));
            }
            out.push(']');
        }
    }
    out
}

const ACCENTED: &[char] = &[
    'à', 'á', 'â', 'ã', 'ä', 'å', 'ā', 'ç', 'ć', 'č', 'è', 'é', 'ê', 'ë', 'ē', 'ę', 'ě', 'ğ', 'ì',
    'í', 'î', 'ï', 'ī', 'ł', 'ñ', 'ń', 'ň', 'ò', 'ó', 'ô', 'õ', 'ö', 'ø', 'ō', 'ő', 'ř', 'ś', 'š',
    'ş', 'ș', 'ť', 'ț', 'ù', 'ú', 'û', 'ü', 'ū', 'ů', 'ű', 'ý', 'ÿ', 'ž', 'ź', 'ż',
];

/// The candidate-specific matchers, built once per submission.
struct CandidateMatchers {
    /// Name variants matched case-insensitively.
    name: Option<Regex>,
    /// Name parts that are common words: case-sensitive, capitalized.
    common: Option<Regex>,
    /// The email's local part as a handle.
    handle: Option<Regex>,
    email: Option<String>,
    /// Folded name parts and handle, to recognise a URL that names the candidate.
    url_tokens: Vec<String>,
}

impl CandidateMatchers {
    /// The matchers for `candidate`, built once per distinct name and email. Building costs
    /// hundreds of microseconds (case-insensitive patterns with accent variants) and the same
    /// candidate is redacted several times: at ingest for storage, when graded, on every
    /// re-grade or cache hit. The matchers are a pure function of the name and email, so a
    /// hit is exactly what a build would give; the compiled regexes also keep their
    /// warmed-up search caches. Bounded: cleared when full, which only costs rebuilds.
    fn cached(
        candidate: Option<&Candidate>,
    ) -> Result<std::sync::Arc<CandidateMatchers>, GuardError> {
        use std::sync::{Arc, LazyLock, Mutex, PoisonError};
        type Key = (Option<String>, Option<String>);
        const MAX: usize = 4096;
        static CACHE: LazyLock<Mutex<HashMap<Key, Arc<CandidateMatchers>>>> =
            LazyLock::new(|| Mutex::new(HashMap::new()));
        let key: Key = candidate.map_or((None, None), |c| (c.name.clone(), c.email.clone()));
        // A poisoned lock only means another thread panicked; the map itself is valid.
        let hit = CACHE
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(m) = hit {
            return Ok(m);
        }
        // Built outside the lock: concurrent submissions must not queue behind a build.
        let m = Arc::new(CandidateMatchers::new(candidate)?);
        let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX {
            cache.clear();
        }
        cache.insert(key, m.clone());
        Ok(m)
    }

    fn new(candidate: Option<&Candidate>) -> Result<CandidateMatchers, GuardError> {
        let mut m = CandidateMatchers {
            name: None,
            common: None,
            handle: None,
            email: None,
            url_tokens: Vec::new(),
        };
        let Some(c) = candidate else {
            return Ok(m);
        };
        let mut variants: Vec<String> = Vec::new();
        let mut commons: Vec<String> = Vec::new();
        if let Some(name) = c.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            let words: Vec<&str> = name
                .split(|ch: char| ch.is_whitespace() || ch == ',')
                .map(|w| w.trim_matches(|ch: char| ch == '.' || ch == '(' || ch == ')'))
                .filter(|w| !w.is_empty())
                .collect();
            if words.len() > 1 {
                variants.push(words.join(" "));
                // "Last, First" and "First Last" both occur; so does the reversed order.
                variants.push(words.iter().rev().copied().collect::<Vec<_>>().join(" "));
            }
            let mut parts: Vec<String> = Vec::new();
            for w in &words {
                parts.push(w.to_string());
                if w.contains('-') {
                    parts.extend(w.split('-').map(str::to_string));
                }
            }
            for p in parts {
                let key = folded(&p);
                if key.chars().filter(|c| c.is_alphabetic()).count() < 2 {
                    continue;
                }
                m.url_tokens.push(key.replace(['-', '\''], ""));
                if let Some((_, nicks)) = NICKNAMES.iter().find(|(full, _)| *full == key) {
                    for n in *nicks {
                        if COMMON_WORDS.contains(n) {
                            commons.push(n.to_string());
                        } else {
                            variants.push(n.to_string());
                        }
                    }
                }
                if COMMON_WORDS.contains(&key.as_str()) {
                    commons.push(p);
                } else {
                    variants.push(p);
                }
            }
        }
        if let Some(email) = c
            .email
            .as_deref()
            .map(str::trim)
            .filter(|e| e.contains('@'))
        {
            m.email = Some(email.to_lowercase());
            let local = email.split('@').next().unwrap_or("");
            let local = local.split('+').next().unwrap_or(local).to_lowercase();
            if local.chars().count() >= 5 && !variants.iter().any(|v| folded(v) == local) {
                // `\b` plus a check of the preceding character in code: a negated Unicode
                // class such as `[^\w.@/]` costs over a millisecond to compile per submission.
                m.handle = Some(compile(&format!(r"(?i)\b({})\b", regex::escape(&local)))?);
                m.url_tokens.push(local.replace(['.', '_', '-'], ""));
            }
        }
        if !variants.is_empty() {
            variants.sort_by_key(|v| std::cmp::Reverse(v.chars().count()));
            variants.dedup();
            let alts: Vec<String> = variants
                .iter()
                .map(|v| {
                    v.split_whitespace()
                        .map(name_fragment)
                        .collect::<Vec<_>>()
                        .join(r"[\s,]+")
                })
                .collect();
            m.name = Some(compile(&format!(r"(?i)\b(?:{})\b", alts.join("|")))?);
        }
        if !commons.is_empty() {
            let alts: Vec<String> = commons
                .iter()
                .map(|w| {
                    let mut cs = w.chars();
                    let first: String = cs
                        .next()
                        .map(|c| c.to_uppercase().collect())
                        .unwrap_or_default();
                    regex::escape(&format!("{first}{}", cs.as_str().to_lowercase()))
                })
                .collect();
            m.common = Some(compile(&format!(r"\b(?:{})\b", alts.join("|")))?);
        }
        Ok(m)
    }
}

/// One redaction session: the placeholder numbering shared by every piece of one submission.
pub struct Redactor {
    statics: &'static Statics,
    cand: std::sync::Arc<CandidateMatchers>,
    numbers: HashMap<(PiiKind, String), u32>,
    next: HashMap<PiiKind, u32>,
    counts: BTreeMap<PiiKind, u32>,
}

#[derive(Debug, Clone)]
struct Hit {
    start: usize,
    end: usize,
    kind: PiiKind,
    /// Placeholder chosen at match time for candidate-specific values.
    fixed: Option<&'static str>,
    /// Normalized value for the placeholder numbering.
    key: String,
    priority: u8,
}

impl Redactor {
    pub fn new(candidate: Option<&Candidate>) -> Result<Redactor, GuardError> {
        Ok(Redactor {
            statics: statics()?,
            cand: CandidateMatchers::cached(candidate)?,
            numbers: HashMap::new(),
            next: HashMap::new(),
            counts: BTreeMap::new(),
        })
    }

    /// Replacements made so far, by kind.
    pub fn counts(&self) -> &BTreeMap<PiiKind, u32> {
        &self.counts
    }

    pub fn total(&self) -> u32 {
        self.counts.values().sum()
    }

    /// `text` with every PII value replaced by its placeholder.
    pub fn redact(&mut self, text: &str) -> String {
        let mut hits = self.find(text);
        hits.sort_by(|a, b| {
            a.start
                .cmp(&b.start)
                .then(a.priority.cmp(&b.priority))
                .then((b.end - b.start).cmp(&(a.end - a.start)))
        });
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        for h in hits {
            if h.start < pos {
                continue;
            }
            out.push_str(&text[pos..h.start]);
            let placeholder = self.placeholder(&h);
            out.push_str(&placeholder);
            *self.counts.entry(h.kind).or_default() += 1;
            pos = h.end;
        }
        out.push_str(&text[pos..]);
        out
    }

    fn placeholder(&mut self, h: &Hit) -> String {
        if let Some(p) = h.fixed {
            return p.to_string();
        }
        let n = match self.numbers.get(&(h.kind, h.key.clone())) {
            Some(n) => *n,
            None => {
                let n = self.next.entry(h.kind).or_insert(0);
                *n += 1;
                let n = *n;
                self.numbers.insert((h.kind, h.key.clone()), n);
                n
            }
        };
        let label = match h.kind {
            PiiKind::Email => "EMAIL",
            PiiKind::Phone => "PHONE",
            PiiKind::Url => "URL",
            PiiKind::Name => "NAME",
            PiiKind::Handle => "HANDLE",
        };
        format!("[{label}_{n}]")
    }

    fn find(&self, text: &str) -> Vec<Hit> {
        let s = self.statics;
        let mut hits = Vec::new();
        // Cheap exact gates: an email holds `@`; the obfuscated form a bracket; a URL `/`
        // or `www.`. Most turns hold none of them and skip those scans entirely.
        let emails = text.contains('@').then(|| s.email.find_iter(text));
        let obfuscated = text
            .contains(['[', '(', '{'])
            .then(|| s.email_obfuscated.find_iter(text));
        for m in emails
            .into_iter()
            .flatten()
            .chain(obfuscated.into_iter().flatten())
        {
            let key = m.as_str().to_lowercase();
            let own = self.cand.email.as_deref() == Some(key.as_str());
            hits.push(Hit {
                start: m.start(),
                end: m.end(),
                kind: PiiKind::Email,
                fixed: own.then_some("[CANDIDATE_EMAIL]"),
                key,
                priority: 0,
            });
        }
        let urls = (text.contains('/') || contains_www(text)).then(|| s.url.find_iter(text));
        for m in urls.into_iter().flatten() {
            let raw = m.as_str();
            let trimmed =
                raw.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', '\'', '"', '*', '`']);
            let end = m.start() + trimmed.len();
            if self.url_is_pii(text, m.start(), trimmed) {
                let key = trimmed
                    .to_lowercase()
                    .trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .trim_start_matches("www.")
                    .trim_end_matches('/')
                    .to_string();
                hits.push(Hit {
                    start: m.start(),
                    end,
                    kind: PiiKind::Url,
                    fixed: None,
                    key,
                    priority: 1,
                });
            }
        }
        // A phone match starts with a digit (`\d` is Unicode: any non-ASCII byte may start one).
        let phones = text
            .bytes()
            .any(|b| b.is_ascii_digit() || !b.is_ascii())
            .then(|| s.phone.find_iter(text));
        for m in phones.into_iter().flatten() {
            if let Some((start, end)) = self.valid_phone(text, m.start(), m.end()) {
                let key: String = text[start..end]
                    .chars()
                    .filter(|c| c.is_ascii_digit() || *c == '+')
                    .collect();
                hits.push(Hit {
                    start,
                    end,
                    kind: PiiKind::Phone,
                    fixed: None,
                    key,
                    priority: 2,
                });
            }
        }
        if let Some(re) = &self.cand.name {
            for m in re.find_iter(text) {
                hits.push(Hit {
                    start: m.start(),
                    end: m.end(),
                    kind: PiiKind::Name,
                    fixed: Some("[CANDIDATE_NAME]"),
                    key: String::new(),
                    priority: 3,
                });
            }
        }
        if let Some(re) = &self.cand.common {
            for m in re.find_iter(text) {
                if at_sentence_start(text, m.start()) {
                    continue;
                }
                hits.push(Hit {
                    start: m.start(),
                    end: m.end(),
                    kind: PiiKind::Name,
                    fixed: Some("[CANDIDATE_NAME]"),
                    key: String::new(),
                    priority: 3,
                });
            }
        }
        if let Some(re) = &self.cand.handle {
            for c in re.captures_iter(text) {
                if let Some(g) = c
                    .get(1)
                    .filter(|g| !text[..g.start()].ends_with(['.', '@', '/', '_', '-', '+']))
                {
                    hits.push(Hit {
                        start: g.start(),
                        end: g.end(),
                        kind: PiiKind::Handle,
                        fixed: Some("[CANDIDATE_HANDLE]"),
                        key: String::new(),
                        priority: 3,
                    });
                }
            }
        }
        hits
    }

    fn url_is_pii(&self, text: &str, start: usize, url: &str) -> bool {
        let lower = url.to_lowercase();
        let rest = lower
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_start_matches("www.");
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let path = &rest[host.len()..];
        let host_is = |h: &str| host == h || host.ends_with(&format!(".{h}"));
        if PROFILE_HOSTS.iter().any(|h| host_is(h)) {
            // A bare host ("github.com") names no one.
            return path.trim_matches('/').len() > 1;
        }
        if PERSONAL_HOSTS.iter().any(|h| host_is(h)) {
            return true;
        }
        let compact: String = folded(rest)
            .chars()
            .filter(|c| c.is_alphanumeric())
            .collect();
        if self
            .cand
            .url_tokens
            .iter()
            .any(|t| t.chars().count() >= 3 && compact.contains(t.as_str()))
        {
            return true;
        }
        self.statics
            .personal_context
            .is_match(&text[back(text, start, 60)..start])
    }

    /// The phone number inside the loose match `[start, end)`, if it is one.
    fn valid_phone(&self, text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
        let s = self.statics;
        let mut cand = text[start..end].trim_end_matches([' ', '.', '-', '(']);
        // A closing parenthesis only belongs to an area code.
        if cand.ends_with(')') {
            cand = cand.trim_end_matches(')');
        }
        let end = start + cand.len();
        let prev = text[..start].chars().next_back();
        if prev.is_some_and(|c| {
            c.is_alphanumeric()
                || c == '.'
                || c == '_'
                || c == '/'
                || c == '$'
                || c == '€'
                || c == '£'
                || c == ','
        }) {
            return None;
        }
        let next = text[end..].chars().next();
        if next.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '%') {
            return None;
        }
        let rest = &text[end..];
        if rest.starts_with('.') && rest[1..].starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        let digits = cand.chars().filter(|c| c.is_ascii_digit()).count();
        if cand.matches('(').count() != cand.matches(')').count() {
            return None;
        }
        let context = s
            .phone_context
            .is_match(&text[back(text, start, 40)..start]);
        if s.unit_after.is_match(rest) && !context {
            return None;
        }
        if let Some(body) = cand.strip_prefix('+') {
            let ok = (8..=15).contains(&digits)
                && body.starts_with(|c: char| c.is_ascii_digit() && c != '0');
            return ok.then_some((start, end));
        }
        if (10..=11).contains(&digits) && s.us.is_match(cand) {
            return Some((start, end));
        }
        let seps = cand.chars().filter(|c| !c.is_ascii_digit()).count();
        if (9..=12).contains(&digits) && seps > 0 && s.eu.is_match(cand) && !looks_like_date(cand) {
            return Some((start, end));
        }
        if context && (s.local.is_match(cand) || ((7..=15).contains(&digits) && seps == 0)) {
            return Some((start, end));
        }
        None
    }
}

/// Whether `text` holds `www.` in any case, as the URL pattern's `(?i)www\.` would match
/// (no letter of `w` has a non-ASCII case variant).
fn contains_www(text: &str) -> bool {
    text.as_bytes()
        .windows(4)
        .any(|w| w[..3].eq_ignore_ascii_case(b"www") && w[3] == b'.')
}

/// The byte offset at most `n` bytes before `pos`, on a char boundary.
pub(crate) fn back(text: &str, pos: usize, n: usize) -> usize {
    let mut b = pos.saturating_sub(n);
    while !text.is_char_boundary(b) {
        b += 1;
    }
    b
}

/// `2024-01-15`, `15.01.2024`, `01/02/2024`: three groups whose shape is a date.
fn looks_like_date(s: &str) -> bool {
    let groups: Vec<&str> = s
        .split(['.', '-', '/', ' '])
        .filter(|g| !g.is_empty())
        .collect();
    groups.len() == 3 && groups.iter().map(|g| g.len()).sum::<usize>() <= 8
}

/// Whether `pos` starts a sentence: nothing but spaces, quotes or brackets since the start or
/// since `.`, `!`, `?` or `:`.
fn at_sentence_start(text: &str, pos: usize) -> bool {
    for c in text[..pos].chars().rev() {
        if c.is_whitespace() || matches!(c, '"' | '\'' | '(' | '[' | '“' | '‘' | '*' | '-') {
            continue;
        }
        return matches!(c, '.' | '!' | '?' | ':' | '\n');
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(name: &str, email: &str) -> Candidate {
        Candidate {
            name: Some(name.into()),
            email: Some(email.into()),
        }
    }

    #[test]
    fn names_variants_and_boundaries() {
        let c = cand("Ann Müller-Lüdenscheidt", "ann.m@example.com");
        let mut r = Redactor::new(Some(&c)).unwrap();
        let out = r.redact(
            "Ann's plan: announce it. Mueller no, Muller-Ludenscheidt yes, ann.m@example.com",
        );
        assert_eq!(
            out,
            "[CANDIDATE_NAME]'s plan: announce it. Mueller no, [CANDIDATE_NAME] yes, [CANDIDATE_EMAIL]"
        );
    }

    #[test]
    fn common_word_names_only_capitalized_mid_sentence() {
        let c = cand("Will Grace", "wg@example.com");
        let mut r = Redactor::new(Some(&c)).unwrap();
        assert_eq!(
            r.redact("We will ship. Will said Grace and Will Grace agreed."),
            "We will ship. Will said [CANDIDATE_NAME] and [CANDIDATE_NAME] agreed."
        );
    }
}
