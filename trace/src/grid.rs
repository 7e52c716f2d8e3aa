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

#[cfg(test)]
mod tests {
    #[test]
    fn looks_up_countries_and_regions() {
        assert_eq!(super::country_g_per_kwh("fr"), Some(41.44));
        assert_eq!(super::country_g_per_kwh("QQ"), None);
        assert!(super::region_g_per_kwh("gcp:europe-west1").is_some());
        assert_eq!(super::region_g_per_kwh("nowhere"), None);
    }
}
