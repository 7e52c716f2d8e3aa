//! `footprint`: what a planned run will use and emit, before it runs:
//! energy_kwh = GPU-hours x watts x PUE / 1000, CO2 = energy x grid intensity.

use eco2ai_trace::grid::{GridChoice, GridError, resolve};
use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum FootprintError {
    #[error("{0} must be a positive number")]
    NotPositive(&'static str),
    #[error("--pue must be at least 1.0")]
    Pue,
    #[error("{0} is at most {1}: no planned run is larger")]
    TooLarge(&'static str, f64),
    #[error("give one of --country, --region, --gco2-per-kwh")]
    Intensity,
    #[error(transparent)]
    Grid(#[from] GridError),
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Footprint {
    pub gpu_hours: f64,
    pub watts: f64,
    pub pue: f64,
    pub gco2_per_kwh: f64,
    pub energy_kwh: f64,
    pub co2_kg: f64,
}

pub fn footprint(
    gpu_hours: f64,
    watts: f64,
    pue: f64,
    country: Option<&str>,
    region: Option<&str>,
    gco2_per_kwh: Option<f64>,
) -> Result<Footprint, FootprintError> {
    let positive = |v: f64| v > 0.0 && v.is_finite();
    if !positive(gpu_hours) {
        return Err(FootprintError::NotPositive("--gpu-hours"));
    }
    if !positive(watts) {
        return Err(FootprintError::NotPositive("--watts"));
    }
    // Bounds no plan reaches (a million GPUs for a century; a 10 kW GPU), so that no
    // input turns into a 300-digit figure.
    if gpu_hours > 1e12 {
        return Err(FootprintError::TooLarge("--gpu-hours", 1e12));
    }
    if watts > 1e4 {
        return Err(FootprintError::TooLarge("--watts", 1e4));
    }
    if pue > 10.0 {
        return Err(FootprintError::TooLarge("--pue", 10.0));
    }
    if !(pue >= 1.0 && pue.is_finite()) {
        return Err(FootprintError::Pue);
    }
    let choice = GridChoice {
        country,
        region,
        gco2_per_kwh,
    };
    let g = resolve(choice)?.ok_or(FootprintError::Intensity)?.g_per_kwh;
    let energy_kwh = gpu_hours * watts * pue / 1000.0;
    Ok(Footprint {
        gpu_hours,
        watts,
        pue,
        gco2_per_kwh: g,
        energy_kwh,
        co2_kg: energy_kwh * g / 1000.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_is_hours_times_watts_times_pue() {
        let f = footprint(100.0, 400.0, 1.2, None, None, Some(500.0)).unwrap();
        assert!((f.energy_kwh - 48.0).abs() < 1e-12);
        assert!((f.co2_kg - 24.0).abs() < 1e-12);
        let fr = footprint(10.0, 700.0, 1.0, Some("FR"), None, None).unwrap();
        assert!((fr.co2_kg - 7.0 * 41.44 / 1000.0).abs() < 1e-12);
    }

    #[test]
    fn bad_input_is_refused() {
        assert_eq!(
            footprint(0.0, 1.0, 1.0, None, None, Some(1.0)),
            Err(FootprintError::NotPositive("--gpu-hours"))
        );
        assert_eq!(
            footprint(1.0, 1.0, 0.9, None, None, Some(1.0)),
            Err(FootprintError::Pue)
        );
        assert_eq!(
            footprint(1.0, 1.0, 1.0, Some("FR"), None, Some(1.0)),
            Err(FootprintError::Grid(GridError::TwoSources))
        );
        assert_eq!(
            footprint(1.0, 1.0, 1.0, None, None, None),
            Err(FootprintError::Intensity)
        );
        assert_eq!(
            footprint(1.0, 1.0, 1.0, Some("QQ"), None, None),
            Err(FootprintError::Grid(GridError::Country("QQ".into())))
        );
        assert!(matches!(
            footprint(1.0, 1.0, 1.0, None, Some("x:y"), None),
            Err(FootprintError::Grid(GridError::Region(_)))
        ));
        assert_eq!(
            footprint(1e300, 1e300, 1.0, None, None, Some(1.0)),
            Err(FootprintError::TooLarge("--gpu-hours", 1e12))
        );
        assert_eq!(
            footprint(1.0, 1.0, 1.0, None, None, Some(1e300)),
            Err(FootprintError::Grid(GridError::Gco2(1e300)))
        );
    }
}
