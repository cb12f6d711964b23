//! Per-model budgets (LiteLLM's `model_max_budget`): which entry of a key's or team's table a
//! request counts against.
//!
//! An entry names a model as the request *reaches* it, after aliases: an exact model name, an
//! access group, or a wildcard. Matching on the name the client sent instead would let an alias
//! of a budgeted model walk around its budget. One entry per holder applies, the most specific
//! (as LiteLLM's `resolve_model_budget` picks): the resolved name as it is, then with or without
//! its provider prefix, then an access group of the serving deployment, then the wildcard with
//! the most literal characters.

use hashbrown::HashMap;

use crate::core::config::index::{Budget, Deployment, GroupId};
use crate::core::config::pattern::Pattern;

/// A key's or team's per-model budgets, indexed once per version.
#[derive(Debug, Default)]
pub struct ModelBudgets {
    /// Entries naming one model.
    pub exact: HashMap<String, Budget>,
    /// Entries naming an access group.
    pub groups: Vec<(GroupId, Budget)>,
    /// Wildcard entries, most specific first.
    pub patterns: Vec<(Pattern, Budget)>,
}

impl ModelBudgets {
    /// True when the holder has no per-model budget.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.groups.is_empty() && self.patterns.is_empty()
    }

    /// Every budget of the table (for the version's list of budget names).
    pub fn all(&self) -> impl Iterator<Item = &Budget> {
        self.exact
            .values()
            .chain(self.groups.iter().map(|(_, b)| b))
            .chain(self.patterns.iter().map(|(_, b)| b))
    }

    /// The entry a request for `resolved` (the model after aliases), served by `deployment`,
    /// counts against.
    pub fn find(&self, resolved: &str, deployment: &Deployment) -> Option<&Budget> {
        if self.is_empty() {
            return None;
        }
        if let Some(budget) = self.exact.get(resolved) {
            return Some(budget);
        }
        let provider = deployment.provider.as_str();
        let other_spelling = match resolved.strip_prefix(provider) {
            Some(rest) if rest.starts_with('/') => rest.get(1..).map(str::to_string),
            _ => Some(format!("{provider}/{resolved}")),
        };
        if let Some(budget) = other_spelling
            .as_deref()
            .and_then(|name| self.exact.get(name))
        {
            return Some(budget);
        }
        if let Some((_, budget)) = self
            .groups
            .iter()
            .find(|(group, _)| deployment.groups.contains(group))
        {
            return Some(budget);
        }
        // A wildcard is matched on both spellings too, as an allow-list's wildcard admits the
        // bare name through its provider-qualified one: `openai/gpt-4o*` counts a bare `gpt-4o`.
        let spellings = [Some(resolved), other_spelling.as_deref()];
        self.patterns
            .iter()
            .find(|(pattern, _)| spellings.iter().flatten().any(|name| pattern.matches(name)))
            .map(|(_, budget)| budget)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use crate::core::compile;
    use crate::core::config::key_hash::{digest, to_hex};

    #[test]
    fn the_most_specific_entry_of_the_resolved_model_applies() {
        let json = format!(
            r#"{{"version":"v1",
              "model_list":[
                {{"model_name":"gpt-4o","litellm_params":{{"model":"openai/gpt-4o"}},"cluster":"o",
                  "model_info":{{"access_groups":["premium"]}}}},
                {{"model_name":"gpt-4o-mini","litellm_params":{{"model":"openai/gpt-4o-mini"}},"cluster":"o"}},
                {{"model_name":"claude-sonnet-4-6","litellm_params":{{"model":"anthropic/claude-sonnet-4-6"}},"cluster":"a",
                  "model_info":{{"access_groups":["premium"]}}}},
                {{"model_name":"o3","litellm_params":{{"model":"openai/o3"}},"cluster":"o"}}],
              "keys":[{{"key_hash":"{}","key_alias":"k",
                "model_max_budget":{{
                  "openai/gpt-4o":{{"budget_limit":1,"time_period":"1d"}},
                  "premium":{{"budget_limit":2}},
                  "gpt-*":{{"budget_limit":3}},
                  "gpt-4o-*":{{"budget_limit":4}}}}}}]}}"#,
            to_hex(&digest("sk-k"))
        );
        let policy = compile(json.as_bytes()).unwrap();
        let budgets = &policy.keys[0].model_budgets;
        let limit = |model: &str| {
            let deployment = policy
                .deployments
                .iter()
                .find(|d| d.model_name == model)
                .unwrap();
            budgets.find(model, deployment).map(|b| b.max_usd)
        };
        // The bare name meets the entry written with its provider.
        assert_eq!(limit("gpt-4o"), Some(1.0));
        // An access group of the serving deployment beats a wildcard.
        assert_eq!(limit("claude-sonnet-4-6"), Some(2.0));
        // The longer wildcard wins.
        assert_eq!(limit("gpt-4o-mini"), Some(4.0));
        assert_eq!(limit("o3"), None);
        // A provider-qualified wildcard counts the bare name it admits, and a bare wildcard the
        // provider-qualified name.
        let qualified = format!(
            r#"{{"version":"v1",
              "model_list":[
                {{"model_name":"gpt-4o","litellm_params":{{"model":"openai/gpt-4o"}},"cluster":"o"}},
                {{"model_name":"openai/*","litellm_params":{{"model":"openai/*"}},"cluster":"o"}}],
              "keys":[{{"key_hash":"{}","key_alias":"k",
                "model_max_budget":{{"openai/gpt-4o*":{{"budget_limit":1}}}}}},
                {{"key_hash":"{}","key_alias":"j",
                "model_max_budget":{{"gpt-4o*":{{"budget_limit":2}}}}}}]}}"#,
            to_hex(&digest("sk-k")),
            to_hex(&digest("sk-j"))
        );
        let both = compile(qualified.as_bytes()).unwrap();
        let exact = &both.deployments[0];
        let wildcard = &both.deployments[1];
        let find = |key: usize, model: &str, d| {
            both.keys[key]
                .model_budgets
                .find(model, d)
                .map(|b| b.max_usd)
        };
        assert_eq!(find(0, "gpt-4o", exact), Some(1.0));
        assert_eq!(find(0, "gpt-4o-mini", wildcard), Some(1.0));
        assert_eq!(find(1, "openai/gpt-4o-mini", wildcard), Some(2.0));
        assert_eq!(find(1, "gpt-4o", exact), Some(2.0));
        assert_eq!(find(0, "o3", wildcard), None);
        let budget = budgets.exact.get("openai/gpt-4o").unwrap();
        assert_eq!(
            &*budget.id,
            &format!("key:{}:model:openai/gpt-4o", to_hex(&digest("sk-k")))
        );
        assert_eq!(budget.model.as_deref(), Some("openai/gpt-4o"));
        assert!(policy.has_budget(&budget.id));
    }
}
