//! The names of the cost map's price fields: which rate, which service tier, which prompt-size
//! threshold a field such as `cache_read_input_token_cost_above_272k_tokens_priority` sets, and
//! storing it in its [`CostEntry`].

use crate::core::config::cost_map::{CostEntry, RateKind, ThresholdPrice, TierPrices};

/// The per-token rates a cost-map field can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BaseRate {
    /// A rate that can also have threshold prices.
    Kind(RateKind),
    /// `output_cost_per_reasoning_token`.
    Reasoning,
    /// `input_cost_per_audio_token`.
    AudioInput,
    /// `output_cost_per_audio_token`.
    AudioOutput,
}

/// The base rate fields, longest first (a field is matched by its longest base name).
const BASE_RATES: [(&str, BaseRate); 8] = [
    (
        "cache_creation_input_token_cost_above_1hr",
        BaseRate::Kind(RateKind::CacheCreation1h),
    ),
    (
        "cache_creation_input_token_cost",
        BaseRate::Kind(RateKind::CacheCreation),
    ),
    (
        "cache_read_input_token_cost",
        BaseRate::Kind(RateKind::CacheRead),
    ),
    ("output_cost_per_reasoning_token", BaseRate::Reasoning),
    ("input_cost_per_audio_token", BaseRate::AudioInput),
    ("output_cost_per_audio_token", BaseRate::AudioOutput),
    ("input_cost_per_token", BaseRate::Kind(RateKind::Input)),
    ("output_cost_per_token", BaseRate::Kind(RateKind::Output)),
];

/// A service tier a field's name can end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldTier {
    /// No suffix.
    Standard,
    /// `_priority`.
    Priority,
    /// `_flex`.
    Flex,
}

/// What a priced field sets: a base rate or a threshold, of a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PricedField {
    pub(crate) tier: FieldTier,
    pub(crate) rate: BaseRate,
    /// `Some(n)`: the price above `n` prompt tokens.
    pub(crate) above_tokens: Option<u64>,
}

/// Parses `<base>[_above_<N>[k]_tokens][_priority|_flex]`. Other suffixes (`_batches`,
/// `_above_12hr`) are not used and give `None` (the field is still validated).
pub(crate) fn priced_field(field: &str) -> Option<PricedField> {
    let (rest, tier) = if let Some(rest) = field.strip_suffix("_priority") {
        (rest, FieldTier::Priority)
    } else if let Some(rest) = field.strip_suffix("_flex") {
        (rest, FieldTier::Flex)
    } else {
        (field, FieldTier::Standard)
    };
    let (name, rate) = BASE_RATES.iter().find(|(name, _)| rest.starts_with(name))?;
    let tail = rest.get(name.len()..)?;
    if tail.is_empty() {
        return Some(PricedField {
            tier,
            rate: *rate,
            above_tokens: None,
        });
    }
    if !matches!(rate, BaseRate::Kind(_)) {
        // Reasoning and audio rates have no threshold prices.
        return None;
    }
    let count = tail.strip_prefix("_above_")?.strip_suffix("_tokens")?;
    let (digits, scale) = match count.strip_suffix('k') {
        Some(digits) => (digits, 1_000),
        None => (count, 1),
    };
    let n: u64 = digits.parse().ok()?;
    Some(PricedField {
        tier,
        rate: *rate,
        above_tokens: Some(n.checked_mul(scale)?),
    })
}

impl CostEntry {
    /// Stores one parsed price.
    pub(crate) fn set_price(&mut self, field: PricedField, price: f64) {
        if let Some(above_tokens) = field.above_tokens {
            if let BaseRate::Kind(kind) = field.rate {
                let threshold = ThresholdPrice {
                    kind,
                    above_tokens,
                    cost_per_token: price,
                };
                match field.tier {
                    FieldTier::Standard => self.thresholds.push(threshold),
                    FieldTier::Priority => self.tier_mut(true).thresholds.push(threshold),
                    FieldTier::Flex => self.tier_mut(false).thresholds.push(threshold),
                }
            }
            return;
        }
        let slot = match field.tier {
            FieldTier::Standard => match field.rate {
                BaseRate::Kind(RateKind::Input) => &mut self.input_cost_per_token,
                BaseRate::Kind(RateKind::Output) => &mut self.output_cost_per_token,
                BaseRate::Kind(RateKind::CacheRead) => &mut self.cache_read_input_token_cost,
                BaseRate::Kind(RateKind::CacheCreation) => {
                    &mut self.cache_creation_input_token_cost
                }
                BaseRate::Kind(RateKind::CacheCreation1h) => &mut self.cache_creation_1h_cost,
                BaseRate::Reasoning => &mut self.output_cost_per_reasoning_token,
                BaseRate::AudioInput => &mut self.input_cost_per_audio_token,
                BaseRate::AudioOutput => &mut self.output_cost_per_audio_token,
            },
            FieldTier::Priority | FieldTier::Flex => {
                let tier = self.tier_mut(field.tier == FieldTier::Priority);
                match field.rate {
                    BaseRate::Kind(RateKind::Input) => &mut tier.input,
                    BaseRate::Kind(RateKind::Output) => &mut tier.output,
                    BaseRate::Kind(RateKind::CacheRead) => &mut tier.cache_read,
                    BaseRate::Kind(RateKind::CacheCreation) => &mut tier.cache_creation,
                    BaseRate::Kind(RateKind::CacheCreation1h) => &mut tier.cache_creation_1h,
                    BaseRate::Reasoning => &mut tier.reasoning,
                    BaseRate::AudioInput => &mut tier.audio_input,
                    BaseRate::AudioOutput => &mut tier.audio_output,
                }
            }
        };
        *slot = Some(price);
    }

    fn tier_mut(&mut self, priority: bool) -> &mut TierPrices {
        let tier = if priority {
            &mut self.priority
        } else {
            &mut self.flex
        };
        tier.get_or_insert_with(Box::default)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn field(tier: FieldTier, kind: RateKind, above_tokens: Option<u64>) -> Option<PricedField> {
        Some(PricedField {
            tier,
            rate: BaseRate::Kind(kind),
            above_tokens,
        })
    }

    #[test]
    fn audio_fields_are_rates_of_their_tier() {
        let audio = |tier, rate| {
            Some(PricedField {
                tier,
                rate,
                above_tokens: None,
            })
        };
        assert_eq!(
            priced_field("input_cost_per_audio_token"),
            audio(FieldTier::Standard, BaseRate::AudioInput)
        );
        assert_eq!(
            priced_field("output_cost_per_audio_token"),
            audio(FieldTier::Standard, BaseRate::AudioOutput)
        );
        assert_eq!(
            priced_field("input_cost_per_audio_token_priority"),
            audio(FieldTier::Priority, BaseRate::AudioInput)
        );
        let mut entry = CostEntry::default();
        entry.set_price(
            PricedField {
                tier: FieldTier::Standard,
                rate: BaseRate::AudioOutput,
                above_tokens: None,
            },
            8e-5,
        );
        assert_eq!(entry.output_cost_per_audio_token, Some(8e-5));
    }

    #[test]
    fn field_names_give_rate_tier_and_threshold() {
        use FieldTier::*;
        use RateKind::*;
        assert_eq!(
            priced_field("cache_read_input_token_cost_above_272k_tokens_priority"),
            field(Priority, CacheRead, Some(272_000))
        );
        assert_eq!(
            priced_field("cache_creation_input_token_cost_above_1hr"),
            field(Standard, CacheCreation1h, None)
        );
        assert_eq!(
            priced_field("cache_creation_input_token_cost_above_1hr_above_200k_tokens"),
            field(Standard, CacheCreation1h, Some(200_000))
        );
        assert_eq!(
            priced_field("input_cost_per_token_flex"),
            field(Flex, Input, None)
        );
        assert_eq!(
            priced_field("output_cost_per_token_above_128_tokens"),
            field(Standard, Output, Some(128))
        );
        assert_eq!(
            priced_field("output_cost_per_reasoning_token_priority"),
            Some(PricedField {
                tier: Priority,
                rate: BaseRate::Reasoning,
                above_tokens: None
            })
        );
        for unused in [
            "input_cost_per_token_batches",
            "cache_creation_input_token_cost_above_12hr_priority",
            "input_cost_per_audio_token_batches",
            "output_cost_per_audio_token_above_1k_tokens",
            "ocr_cost_per_page",
            "output_cost_per_reasoning_token_above_1k_tokens",
        ] {
            assert_eq!(priced_field(unused), None, "{unused}");
        }
    }
}
