//! The grid, price and budget flags of every command that turns energy into CO2 and
//! money (`eco2ai-probe record`, `eco2ai-analyze report`, `compare`, `replay`), declared
//! once and checked once. The grid intensity follows the one rule of
//! [`crate::grid::resolve`]: one flag at most, else the run's own region, else its
//! country label.

use clap::Args;

use crate::grid::{GridChoice, GridError, Intensity, resolve};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PriceError {
    #[error("{flag} must be a non-negative number, got {got}")]
    Negative { flag: &'static str, got: f64 },
    #[error("--pue must be from 1 to 10, got {0}")]
    Pue(f64),
    #[error(transparent)]
    Grid(#[from] GridError),
}

/// Grid intensity, PUE, prices and carbon budget.
#[derive(Args, Clone, Debug)]
pub struct PriceArgs {
    /// ISO 3166 alpha-2 country whose grid intensity (gCO2/kWh,
    /// datasets/grid_intensity_by_country.csv) applies, e.g. FR (analysis: default the
    /// run's label).
    #[arg(long)]
    pub country: Option<String>,
    /// Cloud region as provider:region, e.g. gcp:europe-west1, whose grid intensity
    /// (gCO2/kWh) applies (analysis: default the run's label).
    #[arg(long)]
    pub region: Option<String>,
    /// A fixed grid intensity in gCO2 per kWh, e.g. 41.4.
    #[arg(long)]
    pub gco2_per_kwh: Option<f64>,
    /// Power usage effectiveness of the data centre (facility energy / IT energy, 1 to
    /// 10), e.g. 1.2; it multiplies energy before CO2 and energy cost. Default: the PUE
    /// recorded with the run (`record --pue`), else 1.
    #[arg(long)]
    pub pue: Option<f64>,
    /// Electricity price in USD per kWh of facility energy, e.g. 0.18.
    #[arg(long)]
    pub price_per_kwh: Option<f64>,
    /// Compute price in USD per GPU-hour (cloud rental), e.g. 2.5; adds GPUs x hours x rate.
    #[arg(long)]
    pub gpu_hour_usd: Option<f64>,
    /// Carbon budget of the run in kg CO2e, e.g. 5; says at which step it was (or would
    /// be) exceeded. Needs a grid intensity.
    #[arg(long)]
    pub carbon_budget_kg: Option<f64>,
}

/// The PUE rule for a run: a flag's PUE, else the one recorded with the run, else 1.
/// (`PriceArgs::pue_for` and the replay's prices both apply it.)
pub fn pue_rule(flag: Option<f64>, labels: &crate::meta::Labels) -> f64 {
    flag.or(labels.pue).unwrap_or(1.0)
}

impl PriceArgs {
    /// Ranges: prices, budget and intensity non-negative and finite, PUE 1 to 10, one
    /// known grid intensity at most; returns the intensity the flags give.
    pub fn check(&self) -> Result<Option<Intensity>, PriceError> {
        for (flag, v) in [
            ("--gco2-per-kwh", self.gco2_per_kwh),
            ("--price-per-kwh", self.price_per_kwh),
            ("--gpu-hour-usd", self.gpu_hour_usd),
            ("--carbon-budget-kg", self.carbon_budget_kg),
        ] {
            if let Some(got) = v.filter(|x| !(*x >= 0.0 && x.is_finite())) {
                return Err(PriceError::Negative { flag, got });
            }
        }
        if let Some(p) = self.pue.filter(|p| !(1.0..=10.0).contains(p)) {
            return Err(PriceError::Pue(p));
        }
        Ok(self.flag_intensity()?)
    }

    /// The PUE of a run by the one rule: the flag's, else the one recorded with the run,
    /// else 1.
    pub fn pue_for(&self, labels: &crate::meta::Labels) -> f64 {
        pue_rule(self.pue, labels)
    }

    /// The intensity the flags give, if any (two are refused).
    pub fn flag_intensity(&self) -> Result<Option<Intensity>, GridError> {
        resolve(GridChoice {
            country: self.country.as_deref(),
            region: self.region.as_deref(),
            gco2_per_kwh: self.gco2_per_kwh,
        })
    }

    /// The intensity of the flags, else of the run's labels (its region, else its
    /// country); the source says which. An unknown label is no intensity, not an error.
    pub fn intensity(&self, labels: &crate::Labels) -> Result<Option<Intensity>, GridError> {
        if let Some(i) = self.flag_intensity()? {
            // Country and region sources name the flag's value; --gco2-per-kwh is one.
            let source = if i.source.starts_with("--") {
                i.source
            } else {
                format!("--{}", i.source)
            };
            return Ok(Some(Intensity { source, ..i }));
        }
        Ok(crate::grid::from_labels(labels).map(|i| Intensity {
            source: format!("the run's label {}", i.source),
            ..i
        }))
    }
}
