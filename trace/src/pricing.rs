//! The grid, price and budget flags of every analyzer command (`report`, `compare`,
//! `replay`), declared once and checked once. The grid intensity follows the one rule of
//! `eco2ai_trace::grid::resolve` (the probe's too): one flag at most, else the run's
//! own region, else its country label.

use anyhow::{Result, bail};
use clap::Args;
use eco2ai_trace::grid::{GridChoice, Intensity, resolve};

/// Grid intensity, PUE, prices and carbon budget.
#[derive(Args, Clone, Debug)]
pub struct PriceArgs {
    /// ISO 3166 alpha-2 country whose grid intensity (gCO2/kWh,
    /// datasets/grid_intensity_by_country.csv) applies, e.g. FR (default: the run's label).
    #[arg(long)]
    pub country: Option<String>,
    /// Cloud region as provider:region, e.g. gcp:europe-west1, whose grid intensity
    /// (gCO2/kWh) applies (default: the run's label).
    #[arg(long)]
    pub region: Option<String>,
    /// A fixed grid intensity in gCO2 per kWh, e.g. 41.4.
    #[arg(long)]
    pub gco2_per_kwh: Option<f64>,
    /// Power usage effectiveness of the data centre (facility energy / IT energy, >= 1),
    /// e.g. 1.2; it multiplies energy before CO2 and energy cost.
    #[arg(long, default_value_t = 1.0)]
    pub pue: f64,
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

impl PriceArgs {
    /// Ranges: prices, budget and intensity non-negative and finite, PUE 1 to 10.
    pub fn check(&self) -> Result<()> {
        for (flag, v) in [
            ("--gco2-per-kwh", self.gco2_per_kwh),
            ("--price-per-kwh", self.price_per_kwh),
            ("--gpu-hour-usd", self.gpu_hour_usd),
            ("--carbon-budget-kg", self.carbon_budget_kg),
        ] {
            if let Some(x) = v.filter(|x| !(*x >= 0.0 && x.is_finite())) {
                bail!("{flag} must be a non-negative number, got {x}");
            }
        }
        if !(1.0..=10.0).contains(&self.pue) {
            bail!("--pue must be from 1 to 10, got {}", self.pue);
        }
        self.flag_intensity()?;
        Ok(())
    }

    /// The intensity the flags give, if any (two are refused).
    pub fn flag_intensity(&self) -> Result<Option<Intensity>> {
        Ok(resolve(GridChoice {
            country: self.country.as_deref(),
            region: self.region.as_deref(),
            gco2_per_kwh: self.gco2_per_kwh,
        })?)
    }

    /// The intensity of the flags, else of the run's labels (its region, else its
    /// country); the source says which. An unknown label is no intensity, not an error.
    pub fn intensity(
        &self,
        region: Option<&str>,
        country: Option<&str>,
    ) -> Result<Option<Intensity>> {
        if let Some(i) = self.flag_intensity()? {
            return Ok(Some(Intensity {
                source: format!("--{}", i.source),
                ..i
            }));
        }
        Ok(
            eco2ai_trace::grid::from_labels(region, country).map(|i| Intensity {
                source: format!("the run's label {}", i.source),
                ..i
            }),
        )
    }
}
