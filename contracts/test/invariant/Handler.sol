// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {vm} from "../base/Vm.sol";
import {SNM} from "../../src/SNM.sol";
import {HubWallet} from "../../src/HubWallet.sol";
import {Market} from "../../src/Market.sol";
import {IHubWallet} from "../../src/interfaces/IHubWallet.sol";
import {IMarket} from "../../src/interfaces/IMarket.sol";

/// @notice Drives buyers, hubs, miners, strangers and the DAO through random sequences and
///         keeps the ghost books the invariants compare the chain against. Calls that may
///         legitimately fail in the current state are wrapped in try/catch, so that
///         fail_on_revert only trips on a handler bug.
contract Handler {
    SNM internal immutable snm;
    Market internal immutable market;
    address internal immutable dao;

    address[] public buyers;
    address[] public miners;
    address[] public strangers;
    HubWallet[] public hubs;

    struct OpenDeal {
        uint256 id;
        IMarket.Deal deal;
    }

    OpenDeal[] internal _deals;

    // ---- ghost books ----
    uint256 public escrowIn;
    uint256 public escrowOut;
    /// Successful suspect/rehab/gulag calls from anyone but the DAO (must stay 0).
    uint256 public unauthorizedTransitions;
    /// Owner withdrawals that happened while the hub was not Idle/Created (must stay 0).
    uint256 public withdrawalsOutsideIdle;
    mapping(address => IHubWallet.State) public expectedState;
    /// Frozen funds a Registered hub must still hold: 1 SNM + every lock fee since register.
    mapping(address => uint256) public expectedFrozen;
    mapping(bytes4 => uint256) public calls;

    constructor(
        SNM snm_,
        Market market_,
        address dao_,
        HubWallet[] memory hubs_,
        address[] memory buyers_,
        address[] memory miners_,
        address[] memory strangers_
    ) {
        (snm, market, dao) = (snm_, market_, dao_);
        for (uint256 i; i < hubs_.length; ++i) {
            hubs.push(hubs_[i]);
            expectedState[address(hubs_[i])] = IHubWallet.State.Registered;
            expectedFrozen[address(hubs_[i])] = 1e18;
        }
        buyers = buyers_;
        miners = miners_;
        strangers = strangers_;
    }

    function hubCount() external view returns (uint256) {
        return hubs.length;
    }

    function openEscrow() external view returns (uint256 sum) {
        for (uint256 i; i < _deals.length; ++i) {
            sum += _deals[i].deal.price;
        }
    }

    function _pick(uint256 seed, uint256 n) internal pure returns (uint256) {
        return seed % n;
    }

    function _hub(uint256 seed) internal view returns (HubWallet) {
        return hubs[_pick(seed, hubs.length)];
    }

    function _bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        if (x >= lo && x <= hi) return x;
        return lo + x % (hi - lo + 1);
    }

    // ---- time ----

    function warp(uint256 secs) external {
        vm.warp(block.timestamp + _bound(secs, 1, 40 days));
        ++calls[this.warp.selector];
    }

    // ---- market ----

    function openDeal(uint256 buyerSeed, uint256 hubSeed, uint256 price) external {
        address buyer = buyers[_pick(buyerSeed, buyers.length)];
        HubWallet hub = _hub(hubSeed);
        uint96 p = uint96(_bound(price, 1, 5e18));
        uint40 deadline = uint40(block.timestamp + 2 days);
        vm.prank(buyer);
        try market.openDeal(address(hub), p, deadline) returns (uint256 id) {
            _deals.push(OpenDeal(id, IMarket.Deal(buyer, address(hub), p, deadline, 0)));
            escrowIn += p;
            ++calls[this.openDeal.selector];
        } catch {}
    }

    function commit(uint256 seed) external {
        if (_deals.length == 0) return;
        OpenDeal storage o = _deals[_pick(seed, _deals.length)];
        uint256[] memory ids = new uint256[](1);
        IMarket.Deal[] memory ds = new IMarket.Deal[](1);
        (ids[0], ds[0]) = (o.id, o.deal);
        vm.prank(HubWallet(o.deal.hub).owner());
        try market.commitResults(ids, ds, new bytes32[](1)) {
            o.deal.committedAt = uint40(block.timestamp);
            ++calls[this.commit.selector];
        } catch {}
    }

    function confirm(uint256 seed) external {
        _close(seed, true);
    }

    function settle(uint256 seed) external {
        _close(seed, false);
    }

    function _close(uint256 seed, bool byBuyer) internal {
        if (_deals.length == 0) return;
        uint256 k = _pick(seed, _deals.length);
        OpenDeal memory o = _deals[k];
        uint256[] memory ids = new uint256[](1);
        IMarket.Deal[] memory ds = new IMarket.Deal[](1);
        (ids[0], ds[0]) = (o.id, o.deal);
        if (byBuyer) vm.prank(o.deal.buyer);
        try (byBuyer ? market.confirmDeals : market.settleDeals)(ids, ds) {
            _forget(k, o.deal.price);
            ++calls[byBuyer ? this.confirm.selector : this.settle.selector];
        } catch {}
    }

    function cancel(uint256 seed) external {
        if (_deals.length == 0) return;
        uint256 k = _pick(seed, _deals.length);
        OpenDeal memory o = _deals[k];
        vm.prank(o.deal.buyer);
        try market.cancelDeal(o.id, o.deal) {
            _forget(k, o.deal.price);
            ++calls[this.cancel.selector];
        } catch {}
    }

    function release(uint256 seed) external {
        if (_deals.length == 0) return;
        uint256 k = _pick(seed, _deals.length);
        OpenDeal memory o = _deals[k];
        vm.prank(HubWallet(o.deal.hub).owner());
        try market.releaseDeal(o.id, o.deal) {
            _forget(k, o.deal.price);
            ++calls[this.release.selector];
        } catch {}
    }

    function _forget(uint256 k, uint256 price) internal {
        escrowOut += price;
        _deals[k] = _deals[_deals.length - 1];
        _deals.pop();
    }

    // ---- hub wallet, owner side ----

    function pay(uint256 hubSeed, uint256 minerSeed, uint256 amount) external {
        HubWallet hub = _hub(hubSeed);
        address miner = miners[_pick(minerSeed, miners.length)];
        uint256 a = _bound(amount, 1, 10e18);
        vm.prank(hub.owner());
        try hub.transfer(miner, a) {
            expectedFrozen[address(hub)] += a * 30 / 100;
            ++calls[this.pay.selector];
        } catch {}
    }

    function pull(uint256 hubSeed, uint256 minerSeed, uint256 amount) external {
        HubWallet hub = _hub(hubSeed);
        address miner = miners[_pick(minerSeed, miners.length)];
        // Deliberately unbounded by the allowance: pulls beyond it must fail.
        uint256 a = _bound(amount, 1, 20e18);
        vm.prank(miner);
        try snm.transferFrom(address(hub), miner, a) {
            ++calls[this.pull.selector];
        } catch {}
    }

    function payDay(uint256 hubSeed) external {
        HubWallet hub = _hub(hubSeed);
        vm.prank(hub.owner());
        try hub.payDay() {
            expectedState[address(hub)] = IHubWallet.State.Idle;
            expectedFrozen[address(hub)] = 0;
            ++calls[this.payDay.selector];
        } catch {}
    }

    function withdraw(uint256 hubSeed, uint256 amount) external {
        HubWallet hub = _hub(hubSeed);
        IHubWallet.State before = hub.state();
        vm.prank(hub.owner());
        try hub.withdraw(_bound(amount, 1, 50e18)) {
            if (before != IHubWallet.State.Idle && before != IHubWallet.State.Created) {
                ++withdrawalsOutsideIdle;
            }
            ++calls[this.withdraw.selector];
        } catch {}
    }

    function register(uint256 hubSeed) external {
        HubWallet hub = _hub(hubSeed);
        vm.prank(hub.owner());
        try hub.register() {
            expectedState[address(hub)] = IHubWallet.State.Registered;
            expectedFrozen[address(hub)] = 1e18;
            ++calls[this.register.selector];
        } catch {}
    }

    // ---- DAO-only transitions ----

    function daoSuspect(uint256 hubSeed) external {
        HubWallet hub = _hub(hubSeed);
        vm.prank(dao);
        try hub.suspect() {
            expectedState[address(hub)] = IHubWallet.State.Suspected;
            ++calls[this.daoSuspect.selector];
        } catch {}
    }

    function daoRehab(uint256 hubSeed) external {
        HubWallet hub = _hub(hubSeed);
        vm.prank(dao);
        try hub.rehab() {
            expectedState[address(hub)] = IHubWallet.State.Idle;
            expectedFrozen[address(hub)] = 0;
            ++calls[this.daoRehab.selector];
        } catch {}
    }

    function daoGulag(uint256 hubSeed) external {
        HubWallet hub = _hub(hubSeed);
        vm.prank(dao);
        try hub.gulag() {
            expectedState[address(hub)] = IHubWallet.State.Punished;
            expectedFrozen[address(hub)] = 0;
            ++calls[this.daoGulag.selector];
        } catch {}
    }

    /// @dev Anyone else (owners, miners, buyers, strangers) trying the DAO's transitions.
    function intruderTransition(uint256 hubSeed, uint256 whoSeed, uint8 which) external {
        HubWallet hub = _hub(hubSeed);
        address[4] memory pool = [
            hub.owner(),
            miners[_pick(whoSeed, miners.length)],
            buyers[_pick(whoSeed, buyers.length)],
            strangers[_pick(whoSeed, strangers.length)]
        ];
        vm.startPrank(pool[whoSeed % 4]);
        which %= 3;
        bool ok;
        if (which == 0) {
            try hub.suspect() {
                ok = true;
            } catch {}
        } else if (which == 1) {
            try hub.rehab() {
                ok = true;
            } catch {}
        } else {
            try hub.gulag() {
                ok = true;
            } catch {}
        }
        vm.stopPrank();
        if (ok) ++unauthorizedTransitions;
        ++calls[this.intruderTransition.selector];
    }
}
