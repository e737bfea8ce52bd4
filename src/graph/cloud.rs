//! National clouds: each has its own Graph root and token authority, and tokens never
//! cross from one cloud to another.

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Cloud {
    /// Microsoft Entra global service.
    #[default]
    Global,
    /// US Government L4 (GCC High).
    #[value(name = "usgov")]
    UsGov,
    /// US Government L5 (DoD).
    #[value(name = "usgov-dod")]
    UsGovDod,
    /// Microsoft Entra operated by 21Vianet (China). resetPassword is not available there,
    /// but existing operations can still be read.
    China,
}

impl Cloud {
    /// The Graph root, without a trailing slash.
    pub fn graph_url(self) -> &'static str {
        match self {
            Cloud::Global => "https://graph.microsoft.com",
            Cloud::UsGov => "https://graph.microsoft.us",
            Cloud::UsGovDod => "https://dod-graph.microsoft.us",
            Cloud::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }

    /// The token authority (`{authority}/{tenant}/oauth2/v2.0/token`).
    pub fn login_url(self) -> &'static str {
        match self {
            Cloud::Global => "https://login.microsoftonline.com",
            Cloud::UsGov | Cloud::UsGovDod => "https://login.microsoftonline.us",
            Cloud::China => "https://login.chinacloudapi.cn",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cloud_maps_to_its_own_hosts() {
        let expected = [
            (Cloud::Global, "https://graph.microsoft.com", "https://login.microsoftonline.com"),
            (Cloud::UsGov, "https://graph.microsoft.us", "https://login.microsoftonline.us"),
            (Cloud::UsGovDod, "https://dod-graph.microsoft.us", "https://login.microsoftonline.us"),
            (Cloud::China, "https://microsoftgraph.chinacloudapi.cn", "https://login.chinacloudapi.cn"),
        ];
        for (cloud, graph, login) in expected {
            assert_eq!(cloud.graph_url(), graph);
            assert_eq!(cloud.login_url(), login);
        }
        assert_eq!(Cloud::from_str("usgov-dod", false).unwrap(), Cloud::UsGovDod);
    }
}
