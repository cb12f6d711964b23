//! Model-name wildcards: `*` matches any run of characters, every other character is literal.
//!
//! LiteLLM turns patterns into regexes without escaping, so its `bedrock/us.*` also matches
//! `bedrock/usX…`; Tollgate treats `.` (and everything else but `*`) literally.

/// A compiled wildcard such as `anthropic/*`, `gpt-4o*` or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    /// The literal runs between stars: `a*b*c` → `["a", "b", "c"]`.
    literals: Vec<String>,
}

impl Pattern {
    /// Compiles `source`; returns `None` when it has no `*` (it is then an exact name).
    pub fn parse(source: &str) -> Option<Pattern> {
        if !source.contains('*') {
            return None;
        }
        Some(Pattern {
            source: source.to_string(),
            literals: source.split('*').map(str::to_string).collect(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// How many literal characters the pattern has: more is more specific.
    pub fn specificity(&self) -> usize {
        self.literals.iter().map(String::len).sum()
    }

    /// How many `*` the pattern has.
    pub fn stars(&self) -> usize {
        self.literals.len().saturating_sub(1)
    }

    /// Whether the whole of `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        self.captures(name).is_some()
    }

    /// Matches `name` and returns what the *first* `*` matched, or `None` when it does not match.
    pub fn capture_first<'n>(&self, name: &'n str) -> Option<&'n str> {
        self.captures(name)
            .map(|captures| captures.first().copied().unwrap_or(""))
    }

    /// Matches the whole of `name` and returns what each `*` matched, in order, or `None` when
    /// it does not match. Stars are greedy from the left, as LiteLLM's `(.*)` groups are: each
    /// takes the most it can while the rest still matches (`a*b*c` on `aXbYbZc` is `XbY`, `Z`).
    pub fn captures<'n>(&self, name: &'n str) -> Option<Vec<&'n str>> {
        let (first, rest) = self.literals.split_first()?;
        let Some((last, middle)) = rest.split_last() else {
            return (name == first.as_str()).then(Vec::new);
        };
        let body = name.strip_prefix(first.as_str())?;
        let body = body.strip_suffix(last.as_str())?;
        // Each inner literal at its rightmost place that leaves room for those after it: the
        // stars before it are then as long as they can be.
        let mut spans = Vec::with_capacity(middle.len());
        let mut end = body.len();
        for literal in middle.iter().rev() {
            let found = body.get(..end)?.rfind(literal.as_str())?;
            spans.push((found, found + literal.len()));
            end = found;
        }
        spans.reverse();
        let mut captures = Vec::with_capacity(middle.len() + 1);
        let mut cursor = 0;
        for (start, stop) in spans {
            captures.push(body.get(cursor..start)?);
            cursor = stop;
        }
        captures.push(body.get(cursor..)?);
        Some(captures)
    }

    /// Replaces the n-th `*` of `template` with the n-th capture (for wildcard deployments whose
    /// upstream model is `provider/*`). Compilation guarantees a template has no more `*` than
    /// its `model_name`; a star without a capture is left as it is.
    pub fn substitute(template: &str, captures: &[&str]) -> String {
        let mut out =
            String::with_capacity(template.len() + captures.iter().map(|c| c.len()).sum::<usize>());
        for (i, piece) in template.split('*').enumerate() {
            if i > 0 {
                out.push_str(captures.get(i - 1).copied().unwrap_or("*"));
            }
            out.push_str(piece);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::Pattern;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn name_without_star_is_not_a_pattern() {
        assert!(Pattern::parse("gpt-4o").is_none());
    }

    #[test]
    fn provider_wildcard_matches_only_that_provider() {
        assert!(p("anthropic/*").matches("anthropic/claude-sonnet-4-6"));
        assert!(!p("anthropic/*").matches("anthropicx/claude"));
        assert!(!p("anthropic/*").matches("claude-sonnet-4-6"));
    }

    #[test]
    fn dot_is_literal_unlike_litellm() {
        assert!(p("bedrock/us.*").matches("bedrock/us.anthropic.claude"));
        assert!(!p("bedrock/us.*").matches("bedrock/usXanthropic.claude"));
    }

    #[test]
    fn star_alone_matches_everything_including_empty() {
        assert!(p("*").matches(""));
        assert!(p("*").matches("anything/at/all"));
    }

    #[test]
    fn stars_in_the_middle_and_ends() {
        assert!(p("gpt-*-mini").matches("gpt-4o-mini"));
        assert!(!p("gpt-*-mini").matches("gpt-4o-mini-2024"));
        assert!(p("*claude*").matches("us.anthropic.claude-3"));
        assert!(p("a*b*c").matches("abc"));
        assert!(!p("a*b*c").matches("acb"));
        assert!(!p("ab*ba").matches("aba"));
    }

    #[test]
    fn capture_and_substitute_rewrite_wildcard_targets() {
        assert_eq!(
            p("anthropic/*").capture_first("anthropic/claude-x"),
            Some("claude-x")
        );
        assert_eq!(p("*").capture_first("gpt-4o"), Some("gpt-4o"));
        assert_eq!(p("gpt-*-mini").capture_first("gpt-4o-mini"), Some("4o"));
        assert_eq!(
            Pattern::substitute("openai/*", &["gpt-4o"]),
            "openai/gpt-4o"
        );
    }

    #[test]
    fn every_star_is_captured_and_filled_in_order() {
        let pattern = p("bedrock/*.anthropic.*");
        let captures = pattern.captures("bedrock/us.anthropic.claude-3").unwrap();
        assert_eq!(captures, ["us", "claude-3"]);
        assert_eq!(
            Pattern::substitute("bedrock/*.anthropic.*-v1", &captures),
            "bedrock/us.anthropic.claude-3-v1"
        );
        assert_eq!(
            p("a*b*c").captures("aXbYbZc").unwrap(),
            ["XbY", "Z"],
            "greedy, as LiteLLM"
        );
        assert_eq!(
            p("fo::*::static::*")
                .captures("fo::a::static::b::static::c")
                .unwrap(),
            ["a::static::b", "c"]
        );
        assert_eq!(
            p("*meta.llama3*")
                .captures("hello-meta.llama3-70b")
                .unwrap(),
            ["hello-", "-70b"]
        );
        assert_eq!(p("*").captures("").unwrap(), [""]);
        assert_eq!(p("a*b*c").captures("acb"), None);
    }

    #[test]
    fn specificity_counts_literal_characters() {
        assert!(p("anthropic/*").specificity() > p("*").specificity());
    }
}
