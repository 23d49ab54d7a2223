// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Fixture} from "../base/Fixture.sol";
import {vm} from "../base/Vm.sol";
import {HubWallet} from "../../src/HubWallet.sol";
import {IHubWallet} from "../../src/interfaces/IHubWallet.sol";
import {Handler} from "./Handler.sol";

/// @notice System-wide invariants over random sequences of market, payout and DAO actions.
contract SystemInvariantTest is Fixture {
    Handler internal handler;
    address[] internal holders;

    function setUp() public override {
        super.setUp();
        HubWallet[] memory hubs = new HubWallet[](2);
        address[] memory buyers = new address[](2);
        address[] memory miners = new address[](3);
        address[] memory strangers = new address[](2);
        for (uint256 i; i < 2; ++i) {
            address owner = makeAddr(string.concat("owner", vm.toString(i)));
            hubs[i] = newHub(owner, 40e18);
            buyers[i] = makeAddr(string.concat("buyer", vm.toString(i)));
            strangers[i] = makeAddr(string.concat("stranger", vm.toString(i)));
            give(buyers[i], 500e18);
            vm.prank(buyers[i]);
            snm.approve(address(market), type(uint256).max);
            holders.push(owner);
            holders.push(address(hubs[i]));
            holders.push(buyers[i]);
            holders.push(strangers[i]);
        }
        for (uint256 i; i < 3; ++i) {
            miners[i] = makeAddr(string.concat("miner", vm.toString(i)));
            holders.push(miners[i]);
        }
        handler = new Handler(snm, market, address(dao), hubs, buyers, miners, strangers);
        holders.push(address(this));
        holders.push(voter);
        holders.push(address(market));
        holders.push(address(dao));
        holders.push(address(verification));
        holders.push(address(handler));
        targetContract(address(handler));
    }

    /// Total SNM never changes and is all accounted for by the known holders.
    function invariant_snmConserved() public view {
        uint256 sum;
        for (uint256 i; i < holders.length; ++i) {
            sum += snm.balanceOf(holders[i]);
        }
        assertEq(sum, snm.totalSupply(), "supply conserved across contracts and holders");
    }

    /// Only the DAO moves hubs into or out of suspicion: every state is the one the handler
    /// expects from its DAO and owner actions, and no one else's attempt ever succeeded.
    function invariant_onlyDaoSuspectsRehabsGulags() public view {
        assertEq(handler.unauthorizedTransitions(), 0, "non-DAO transition succeeded");
        for (uint256 i; i < handler.hubCount(); ++i) {
            HubWallet hub = handler.hubs(i);
            assertEq(
                uint256(hub.state()), uint256(handler.expectedState(address(hub))), "hub state"
            );
        }
    }

    /// Frozen funds are exactly 1 SNM plus every lock fee while Registered, cover at least
    /// that while Suspected, are always backed by the balance, and owners withdraw only
    /// from Idle (or never-registered) wallets.
    function invariant_lockedFundsStayUntilPayday() public view {
        assertEq(handler.withdrawalsOutsideIdle(), 0, "withdrawal before payday");
        for (uint256 i; i < handler.hubCount(); ++i) {
            address hub = address(handler.hubs(i));
            uint256 locked = snm.lockedOf(hub);
            IHubWallet.State st = IHubWallet(hub).state();
            if (st == IHubWallet.State.Registered) {
                assertEq(locked, handler.expectedFrozen(hub), "frozen funds intact");
            } else if (st == IHubWallet.State.Suspected) {
                assertGe(locked, handler.expectedFrozen(hub), "suspicion keeps frozen funds");
            } else {
                assertEq(locked, 0, "nothing frozen outside Registered/Suspected");
            }
            assertGe(snm.balanceOf(hub), locked + snm.reservedOf(hub), "encumbrance is backed");
        }
    }

    /// The escrow pays out no more than was deposited, and holds exactly the open deals.
    function invariant_escrowNeverOverpays() public view {
        assertLe(handler.escrowOut(), handler.escrowIn(), "paid out more than deposited");
        assertEq(
            snm.balanceOf(address(market)),
            handler.escrowIn() - handler.escrowOut(),
            "escrow balance = deposits - payouts"
        );
        assertEq(snm.balanceOf(address(market)), handler.openEscrow(), "= open deal prices");
    }

    /// The handler's paths really succeed (the invariants would be vacuous otherwise).
    function test_handlerPathsSucceed() public {
        handler.openDeal(0, 0, 1e18);
        handler.openDeal(1, 0, 2e18);
        handler.openDeal(0, 1, 3e18);
        handler.commit(0);
        handler.confirm(0);
        handler.commit(0);
        handler.warp(2 days);
        handler.settle(0);
        handler.warp(3 days);
        handler.cancel(0);
        handler.openDeal(0, 0, 1e18);
        handler.release(0);
        handler.pay(0, 0, 5e18);
        handler.pull(0, 0, 5e18);
        handler.warp(31 days);
        handler.payDay(0);
        handler.withdraw(0, 1e18);
        handler.register(0);
        handler.daoSuspect(1);
        handler.daoRehab(1);
        handler.register(1);
        handler.daoSuspect(1);
        handler.warp(40 days);
        handler.warp(40 days);
        handler.warp(40 days);
        handler.daoGulag(1);
        bytes4[15] memory paths = [
            handler.openDeal.selector,
            handler.commit.selector,
            handler.confirm.selector,
            handler.settle.selector,
            handler.cancel.selector,
            handler.release.selector,
            handler.pay.selector,
            handler.pull.selector,
            handler.payDay.selector,
            handler.withdraw.selector,
            handler.register.selector,
            handler.daoSuspect.selector,
            handler.daoRehab.selector,
            handler.daoGulag.selector,
            handler.warp.selector
        ];
        for (uint256 i; i < paths.length; ++i) {
            assertGe(
                handler.calls(paths[i]), 1, string.concat("path never succeeded: #", vm.toString(i))
            );
        }
        invariant_snmConserved();
        invariant_onlyDaoSuspectsRehabsGulags();
        invariant_lockedFundsStayUntilPayday();
        invariant_escrowNeverOverpays();
    }
}
