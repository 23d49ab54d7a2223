// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Test} from "./Test.sol";
import {vm} from "./Vm.sol";
import {SosnaDeploy} from "../../script/SosnaDeploy.sol";
import {SNM} from "../../src/SNM.sol";
import {DAO} from "../../src/DAO.sol";
import {HubFactory} from "../../src/HubFactory.sol";
import {HubWallet} from "../../src/HubWallet.sol";
import {Whitelist} from "../../src/Whitelist.sol";
import {Market} from "../../src/Market.sol";
import {Verification} from "../../src/Verification.sol";
import {IDAO} from "../../src/interfaces/IDAO.sol";

/// @notice Deploys the system with the test contract as genesis holder and offers helpers
///         to fund accounts, open hubs and pass DAO votes.
abstract contract Fixture is Test {
    uint256 internal constant SNM_UNIT = 1e18;
    uint256 internal constant VOTING_PERIOD = 3 days;
    uint256 internal constant QUORUM = 1000e18;
    uint256 internal constant CONFIRM_WINDOW = 1 days;
    uint256 internal constant UNBONDING = 7 days;
    uint256 internal constant PROVER_SHARE_BPS = 5000;

    SNM internal snm;
    DAO internal dao;
    HubFactory internal factory;
    Whitelist internal whitelist;
    Market internal market;
    Verification internal verification;

    address internal voter;

    function setUp() public virtual {
        vm.warp(1_700_000_000);
        SosnaDeploy.System memory s = SosnaDeploy.deploy(
            address(this),
            SosnaDeploy.Params({
                supply: 444_000_000e18,
                votingPeriod: VOTING_PERIOD,
                quorum: QUORUM,
                confirmWindow: CONFIRM_WINDOW,
                unbondingPeriod: UNBONDING,
                proverShareBps: PROVER_SHARE_BPS
            })
        );
        (snm, dao, factory, whitelist, market, verification) =
        (s.snm, s.dao, s.factory, s.whitelist, s.market, s.verification);
        voter = makeAddr("voter");
        give(voter, QUORUM);
    }

    /// @dev Sends SNM from the genesis holder (this contract).
    function give(address to, uint256 amount) internal {
        snm.transfer(to, amount);
    }

    /// @dev A listed hub owned by `owner`, funded with `funds` and registered (1 SNM frozen).
    function newHub(address owner, uint256 funds) internal returns (HubWallet w) {
        give(owner, funds);
        vm.startPrank(owner);
        snm.approve(address(factory), funds);
        w = HubWallet(factory.createHub("/ip4/127.0.0.1/tcp/4001", "hub", funds));
        vm.stopPrank();
    }

    /// @dev Proposes `action` on `hub`, votes it through with the quorum and executes it.
    function passAndExecute(IDAO.Action action, address hub) internal {
        uint256 id = dao.propose(action, hub);
        vm.startPrank(voter);
        snm.approve(address(dao), type(uint256).max);
        dao.vote(id, true, QUORUM);
        vm.stopPrank();
        vm.warp(block.timestamp + VOTING_PERIOD);
        dao.execute(id);
        vm.prank(voter);
        dao.reclaim(id);
    }
}
