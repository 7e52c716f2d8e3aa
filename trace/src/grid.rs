//! Grid carbon intensity by country or cloud region, from the tables in datasets/
//! (embedded, with their attribution in datasets/ATTRIBUTION.md); shared by the live
//! metrics and the analyzer.

const COUNTRIES: &str = include_str!("../../datasets/grid_intensity_by_country.csv");
const REGIONS: &str = include_str!("../../datasets/cloud_region_intensity.csv");

/// gCO2e/kWh of an ISO 3166 alpha-2 country.
pub fn country_g_per_kwh(iso2: &str) -> Option<f64> {
    COUNTRIES.lines().skip(1).find_map(|l| {
        let mut f = l.split(',');
        let code = f.next()?;
        code.eq_ignore_ascii_case(iso2)
            .then(|| f.next()?.trim().parse().ok())
            .flatten()
    })
}

/// gCO2e/kWh of a cloud region written `provider:region` (e.g. `gcp:europe-west1`).
pub fn region_g_per_kwh(spec: &str) -> Option<f64> {
    let (provider, region) = spec.split_once(':')?;
    REGIONS.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split(',').collect();
        let hit =
            f.len() > 3 && f[0].eq_ignore_ascii_case(provider) && f[1].eq_ignore_ascii_case(region);
        if hit { f[3].trim().parse().ok() } else { None }
    })
}

/// The grid intensity flags of any command: at most one may be given.
#[derive(Debug, Clone, Copy, Default)]
pub struct GridChoice<'a> {
    pub country: Option<&'a str>,
    pub region: Option<&'a str>,
    pub gco2_per_kwh: Option<f64>,
}

/// A resolved grid intensity and where it came from, in words a user can check.
#[derive(Debug, Clone, PartialEq)]
pub struct Intensity {
    pub g_per_kwh: f64,
    pub source: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GridError {
    #[error("give one grid intensity: --country, --region or --gco2-per-kwh, not two")]
    TwoSources,
    #[error(
        "unknown country '{0}': no grid intensity for it in datasets/grid_intensity_by_country.csv"
    )]
    Country(String),
    #[error(
        "unknown region '{0}': expected provider:region from datasets/cloud_region_intensity.csv, e.g. gcp:europe-west1"
    )]
    Region(String),
    #[error("--gco2-per-kwh must be a number from 0 to 5000, got {0}")]
    Gco2(f64),
}

/// The one rule for every command, live and offline: the one flag given (two are an
/// error), looked up in the embedded tables; `None` when none is given.
pub fn resolve(c: GridChoice) -> Result<Option<Intensity>, GridError> {
    let given = [
        c.country.is_some(),
        c.region.is_some(),
        c.gco2_per_kwh.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(GridError::TwoSources);
    }
    if let Some(r) = c.region {
        let g = region_g_per_kwh(r).ok_or_else(|| GridError::Region(r.into()))?;
        let source = format!("region {r} (datasets/cloud_region_intensity.csv)");
        return Ok(Some(Intensity {
            g_per_kwh: g,
            source,
        }));
    }
    if let Some(k) = c.country {
        let g = country_g_per_kwh(k).ok_or_else(|| GridError::Country(k.into()))?;
        let source = format!(
            "country {} (datasets/grid_intensity_by_country.csv)",
            k.to_uppercase()
        );
        return Ok(Some(Intensity {
            g_per_kwh: g,
            source,
        }));
    }
    match c.gco2_per_kwh {
        Some(g) if (0.0..=5000.0).contains(&g) => Ok(Some(Intensity {
            g_per_kwh: g,
            source: "--gco2-per-kwh".into(),
        })),
        Some(g) => Err(GridError::Gco2(g)),
        None => Ok(None),
    }
}

/// A run's own labels when no flag is given: its region, else its country, else the
/// fixed intensity it was recorded with. An unknown label (a run recorded with a newer
/// table, say) is no intensity, not an error.
pub fn from_labels(labels: &crate::Labels) -> Option<Intensity> {
    let (region, country) = (labels.region.as_deref(), labels.country.as_deref());
    let choice = GridChoice {
        region,
        country: if region.is_none() { country } else { None },
        gco2_per_kwh: if region.is_none() && country.is_none() {
            labels.gco2_per_kwh
        } else {
            None
        },
    };
    resolve(choice).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::{GridChoice, GridError, resolve};

    #[test]
    fn one_rule_for_every_command() {
        let fr = resolve(GridChoice {
            country: Some("fr"),
            ..Default::default()
        });
        let fr = fr.unwrap().unwrap();
        assert_eq!(fr.g_per_kwh, 41.44);
        assert!(fr.source.starts_with("country FR"), "{}", fr.source);
        let two = resolve(GridChoice {
            country: Some("FR"),
            region: Some("gcp:europe-west1"),
            gco2_per_kwh: None,
        });
        assert_eq!(two, Err(GridError::TwoSources));
        let bad = resolve(GridChoice {
            gco2_per_kwh: Some(f64::NAN),
            ..Default::default()
        });
        assert!(matches!(bad, Err(GridError::Gco2(_))));
        assert_eq!(resolve(GridChoice::default()), Ok(None));
    }

    #[test]
    fn looks_up_countries_and_regions() {
        assert_eq!(super::country_g_per_kwh("fr"), Some(41.44));
        assert_eq!(super::country_g_per_kwh("QQ"), None);
        assert!(super::region_g_per_kwh("gcp:europe-west1").is_some());
        assert_eq!(super::region_g_per_kwh("nowhere"), None);
    }
}
