// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {SNM} from "../src/SNM.sol";
import {DAO} from "../src/DAO.sol";
import {HubFactory} from "../src/HubFactory.sol";
import {Whitelist} from "../src/Whitelist.sol";
import {Market} from "../src/Market.sol";
import {Verification} from "../src/Verification.sol";

/// @notice Deploys and wires the whole contract system; shared by the deploy script and the
///         test fixtures so both exercise the same wiring.
library SosnaDeploy {
    struct Params {
        uint128 supply;
        uint256 votingPeriod;
        uint256 quorum;
        uint256 confirmWindow;
        uint256 unbondingPeriod;
        uint256 proverShareBps;
    }

    struct System {
        SNM snm;
        DAO dao;
        HubFactory factory;
        Whitelist whitelist;
        Market market;
        Verification verification;
    }

    /// @dev 444M SNM as in the original token; timings sized for a live network.
    function defaults() internal pure returns (Params memory) {
        return Params({
            supply: 444_000_000e18,
            votingPeriod: 3 days,
            quorum: 1_000_000e18,
            confirmWindow: 1 days,
            unbondingPeriod: 7 days,
            proverShareBps: 5_000
        });
    }

    /// @notice SNM first (its supply goes to `genesisHolder`), then the DAO, which creates
    ///         the factory and whitelist, then the market and verification that use them.
    function deploy(address genesisHolder, Params memory p) internal returns (System memory s) {
        s.snm = new SNM(genesisHolder, p.supply);
        s.dao = new DAO(address(s.snm), p.votingPeriod, p.quorum);
        s.factory = HubFactory(s.dao.factory());
        s.whitelist = Whitelist(s.dao.whitelist());
        s.market = new Market(address(s.snm), address(s.whitelist), p.confirmWindow);
        s.verification =
            new Verification(address(s.snm), address(s.dao), p.unbondingPeriod, p.proverShareBps);
    }
}
