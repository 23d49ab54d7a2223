// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Fixture} from "./base/Fixture.sol";
import {vm} from "./base/Vm.sol";
import {HubWallet} from "../src/HubWallet.sol";
import {IMarket} from "../src/interfaces/IMarket.sol";
import {IDAO} from "../src/interfaces/IDAO.sol";

contract MarketTest is Fixture {
    uint96 internal constant PRICE = 3e18;

    address internal buyer;
    address internal hubOwner;
    address internal stranger;
    HubWallet internal hub;
    uint40 internal deadline;

    function setUp() public override {
        super.setUp();
        buyer = makeAddr("buyer");
        hubOwner = makeAddr("hubOwner");
        stranger = makeAddr("stranger");
        hub = newHub(hubOwner, 10e18);
        give(buyer, 1000e18);
        vm.prank(buyer);
        snm.approve(address(market), type(uint256).max);
        deadline = uint40(block.timestamp + 1 hours);
    }

    // ---- helpers -------------------------------------------------------------------------

    function _open(uint96 price) internal returns (uint256 id, IMarket.Deal memory d) {
        vm.prank(buyer);
        id = market.openDeal(address(hub), price, deadline);
        d = IMarket.Deal(buyer, address(hub), price, deadline, 0);
    }

    function _one(uint256 id) internal pure returns (uint256[] memory ids) {
        ids = new uint256[](1);
        ids[0] = id;
    }

    function _one(IMarket.Deal memory d) internal pure returns (IMarket.Deal[] memory ds) {
        ds = new IMarket.Deal[](1);
        ds[0] = d;
    }

    function _commit(uint256 id, IMarket.Deal memory d) internal returns (IMarket.Deal memory) {
        bytes32[] memory digests = new bytes32[](1);
        digests[0] = sha256("result");
        vm.prank(hubOwner);
        market.commitResults(_one(id), _one(d), digests);
        d.committedAt = uint40(block.timestamp);
        return d;
    }

    function _confirm(uint256 id, IMarket.Deal memory d) internal {
        vm.prank(buyer);
        market.confirmDeals(_one(id), _one(d));
    }

    // ---- open -------------------------------------------------------------------------------

    function test_openDeal_escrowsPrice() public {
        uint256 before = snm.balanceOf(buyer);
        (uint256 id, IMarket.Deal memory d) = _open(PRICE);
        assertEq(snm.balanceOf(address(market)), PRICE, "escrowed");
        assertEq(before - snm.balanceOf(buyer), PRICE, "paid");
        assertTrue(market.isOpen(id, d), "open");
        assertEq(market.dealCount(), 1, "count");
        assertEq(market.hashDeal(id, d), keccak256(abi.encode(id, d)), "documented hash");
    }

    function test_openDeals_batchEmitsIdsAndPullsOnce() public {
        uint96[] memory prices = new uint96[](3);
        (prices[0], prices[1], prices[2]) = (1e18, 2e18, 3e18);
        uint256[] memory expected = new uint256[](3);
        for (uint256 i; i < 3; ++i) {
            expected[i] = (i << 64) | (i + 1);
        }
        vm.expectEmit(true, true, true, true, address(market));
        emit IMarket.DealsOpened(buyer, address(hub), deadline, expected, prices);
        vm.prank(buyer);
        uint256[] memory ids = market.openDeals(address(hub), prices, deadline);
        assertEq(snm.balanceOf(address(market)), 6e18, "escrowed");
        for (uint256 i; i < 3; ++i) {
            assertEq(ids[i], expected[i], "id");
            assertTrue(
                market.isOpen(ids[i], IMarket.Deal(buyer, address(hub), prices[i], deadline, 0)),
                "open"
            );
        }
    }

    function test_open_rejectsBadTerms() public {
        vm.startPrank(buyer);
        vm.expectRevert(IMarket.InvalidTerms.selector);
        market.openDeal(address(hub), 0, deadline);
        vm.expectRevert(IMarket.InvalidTerms.selector);
        market.openDeal(address(hub), PRICE, uint40(block.timestamp));
        vm.expectRevert(IMarket.BadBatch.selector);
        market.openDeals(address(hub), new uint96[](0), deadline);
        vm.expectRevert(abi.encodeWithSelector(IMarket.HubNotActive.selector, stranger));
        market.openDeal(stranger, PRICE, deadline);
        vm.stopPrank();
    }

    function test_open_rejectsInactiveHubs() public {
        vm.prank(address(dao));
        hub.suspect();
        vm.expectRevert(abi.encodeWithSelector(IMarket.HubNotActive.selector, address(hub)));
        vm.prank(buyer);
        market.openDeal(address(hub), PRICE, deadline);
    }

    // ---- commit -----------------------------------------------------------------------------

    function test_commit_recordsDigest() public {
        (uint256 id, IMarket.Deal memory d) = _open(PRICE);
        bytes32[] memory digests = new bytes32[](1);
        digests[0] = sha256("result");
        vm.expectEmit(true, true, true, true, address(market));
        emit IMarket.ResultsCommitted(address(hub), uint40(block.timestamp), _one(id), digests);
        IMarket.Deal memory c = _commit(id, d);
        assertFalse(
            market.isOpen(id, IMarket.Deal(buyer, address(hub), PRICE, deadline, 0)),
            "uncommitted terms are stale"
        );
        assertTrue(market.isOpen(id, c), "committed terms");
    }

    function test_commit_onlyHubOwner() public {
        (uint256 id, IMarket.Deal memory d) = _open(PRICE);
        vm.expectRevert(abi.encodeWithSelector(IMarket.NotHubOwner.selector, stranger));
        vm.prank(stranger);
        market.commitResults(_one(id), _one(d), new bytes32[](1));
    }

    function test_commit_forbiddenTwiceAfterDeadlineOrWithWrongTerms() public {
        (uint256 id, IMarket.Deal memory d) = _open(PRICE);
        IMarket.Deal memory bad = IMarket.Deal(buyer, address(hub), PRICE + 1, deadline, 0);
        vm.expectRevert(abi.encodeWithSelector(IMarket.UnknownDeal.selector, id));
        vm.prank(hubOwner);
        market.commitResults(_one(id), _one(bad), new bytes32[](1));
        IMarket.Deal memory c = _commit(id, d);
        vm.expectRevert(abi.encodeWithSelector(IMarket.AlreadyCommitted.selector, id));
        vm.prank(hubOwner);
        market.commitResults(_one(id), _one(c), new bytes32[](1));

        (uint256 id2, IMarket.Deal memory d2) = _open(PRICE);
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IMarket.DeadlinePassed.selector, deadline));
        vm.prank(hubOwner);
        market.commitResults(_one(id2), _one(d2), new bytes32[](1));
    }

    function test_commit_rejectsMixedHubsAndBadBatches() public {
        (uint256 id, IMarket.Deal memory d) = _open(PRICE);
        address owner2 = makeAddr("owner2");
        HubWallet hub2 = newHub(owner2, 5e18);
        vm.prank(buyer);
        uint256 id2 = market.openDeal(address(hub2), PRICE, deadline);
        uint256[] memory ids = new uint256[](2);
        IMarket.Deal[] memory ds = new IMarket.Deal[](2);
        (ids[0], ids[1]) = (id, id2);
        (ds[0], ds[1]) = (d, IMarket.Deal(buyer, address(hub2), PRICE, deadline, 0));
        vm.expectRevert(IMarket.BadBatch.selector);
        vm.prank(hubOwner);
        market.commitResults(ids, ds, new bytes32[](2));
        vm.expectRevert(IMarket.BadBatch.selector);
        vm.prank(hubOwner);
        market.commitResults(ids, ds, new bytes32[](1));
    }

    function test_commit_forbiddenForSuspectedHub() public {
        (uint256 id, IMarket.Deal memory d) = _open(PRICE);
        vm.prank(address(dao));
        hub.suspect();
        vm.expectRevert(abi.encodeWithSelector(IMarket.HubNotActive.selector, address(hub)));
        vm.prank(hubOwner);
        market.commitResults(_one(id), _one(d), new bytes32[](1));
    }

    // ---- confirm and settle -------------------------------------------------------------------

    function test_confirm_paysHub() public {
        (uint256 id, IMarket.Deal memory d) = _open(PRICE);
        d = _commit(id, d);
        uint256 before = snm.balanceOf(address(hub));
        vm.expectEmit(true, true, true, true, address(market));
        emit IMarket.DealsClosed(IMarket.Outcome.Confirmed, _one(id));
        _confirm(id, d);
        assertEq(snm.balanceOf(address(hub)) - before, PRICE, "hub paid");
        assertEq(snm.balanceOf(address(market)), 0, "escrow empty");
        assertFalse(market.isOpen(id, d), "closed");
    }

    function test_confirm_onlyBuyerAndOnlyCommitted() public {
        (uint256 id, IMarket.Deal memory d) = _open(PRICE);
        vm.expectRevert(abi.encodeWithSelector(IMarket.NotCommitted.selector, id));
        _confirm(id, d);
        d = _commit(id, d);
        vm.expectRevert(abi.encodeWithSelector(IMarket.NotBuyer.selector, stranger));
        vm.prank(stranger);
        market.confirmDeals(_one(id), _one(d));
        _confirm(id, d);
        vm.expectRevert(abi.encodeWithSelector(IMarket.UnknownDeal.selector, id));
        _confirm(id, d);
        vm.expectRevert(IMarket.BadBatch.selector);
        vm.prank(buyer);
        market.confirmDeals(new uint256[](0), new IMarket.Deal[](0));
    }

    function test_confirm_paysEachHubOfAMixedBatch() public {
        address owner2 = makeAddr("owner2");
        HubWallet hub2 = newHub(owner2, 5e18);
        (uint256 a, IMarket.Deal memory da) = _open(1e18);
        vm.prank(buyer);
        uint256 b = market.openDeal(address(hub2), 2e18, deadline);
        IMarket.Deal memory db = IMarket.Deal(buyer, address(hub2), 2e18, deadline, 0);
        (uint256 c, IMarket.Deal memory dc) = _open(4e18);
        da = _commit(a, da);
        dc = _commit(c, dc);
        bytes32[] memory digests = new bytes32[](1);
        vm.prank(owner2);
        market.commitResults(_one(b), _one(db), digests);
        db.committedAt = uint40(block.timestamp);

        uint256[] memory ids = new uint256[](3);
        IMarket.Deal[] memory ds = new IMarket.Deal[](3);
        (ids[0], ids[1], ids[2]) = (a, b, c);
        (ds[0], ds[1], ds[2]) = (da, db, dc);
        uint256 h1 = snm.balanceOf(address(hub));
        uint256 h2 = snm.balanceOf(address(hub2));
        vm.prank(buyer);
        market.confirmDeals(ids, ds);
        assertEq(snm.balanceOf(address(hub)) - h1, 5e18, "hub got a + c");
        assertEq(snm.balanceOf(address(hub2)) - h2, 2e18, "hub2 got b");
    }

    function test_settle_afterConfirmWindowOnly() public {
        (uint256 id, IMarket.Deal memory d) = _open(PRICE);
        d = _commit(id, d);
        uint256 until = block.timestamp + CONFIRM_WINDOW;
        vm.warp(until);
        vm.expectRevert(abi.encodeWithSelector(IMarket.ConfirmWindowOpen.selector, until));
        vm.prank(stranger);
        market.settleDeals(_one(id), _one(d));
        vm.warp(until + 1);
        vm.expectEmit(true, true, true, true, address(market));
        emit IMarket.DealsClosed(IMarket.Outcome.TimedOut, _one(id));
        vm.prank(stranger);
        market.settleDeals(_one(id), _one(d));
        assertEq(snm.balanceOf(address(market)), 0, "settled");
    }

    function test_settle_requiresCommit() public {
        (uint256 id, IMarket.Deal memory d) = _open(PRICE);
        vm.warp(block.timestamp + 30 days);
        vm.expectRevert(abi.encodeWithSelector(IMarket.NotCommitted.selector, id));
        market.settleDeals(_one(id), _one(d));
    }

    // ---- cancel and release ------------------------------------------------------------------

    function test_cancel_afterDeadlineRefunds() public {
        (uint256 id, IMarket.Deal memory d) = _open(PRICE);
        vm.expectRevert(abi.encodeWithSelector(IMarket.CancelNotAllowed.selector, id));
        vm.prank(buyer);
        market.cancelDeal(id, d);
        vm.warp(deadline + 1);
        uint256 before = snm.balanceOf(buyer);
        vm.expectEmit(true, true, true, true, address(market));
        emit IMarket.DealsClosed(IMarket.Outcome.Cancelled, _one(id));
        vm.prank(buyer);
        market.cancelDeal(id, d);
        assertEq(snm.balanceOf(buyer) - before, PRICE, "refunded");
    }

    function test_cancel_immediatelyWhenHubStopsBeingActive() public {
        (uint256 id, IMarket.Deal memory d) = _open(PRICE);
        passAndExecute(IDAO.Action.Deregister, address(hub));
        vm.warp(deadline - 1);
        vm.prank(buyer);
        market.cancelDeal(id, d);
        assertEq(snm.balanceOf(address(market)), 0, "refunded");
    }

    function test_cancel_forbiddenForStrangersAndCommittedDeals() public {
        (uint256 id, IMarket.Deal memory d) = _open(PRICE);
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IMarket.NotBuyer.selector, stranger));
        vm.prank(stranger);
        market.cancelDeal(id, d);
        vm.warp(deadline);
        d = _commit(id, d);
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IMarket.AlreadyCommitted.selector, id));
        vm.prank(buyer);
        market.cancelDeal(id, d);
    }

    function test_release_byHubRefundsBuyer() public {
        (uint256 id, IMarket.Deal memory d) = _open(PRICE);
        vm.expectRevert(abi.encodeWithSelector(IMarket.NotHubOwner.selector, buyer));
        vm.prank(buyer);
        market.releaseDeal(id, d);
        uint256 before = snm.balanceOf(buyer);
        vm.prank(hubOwner);
        market.releaseDeal(id, d);
        assertEq(snm.balanceOf(buyer) - before, PRICE, "refunded");
        (uint256 id2, IMarket.Deal memory d2) = _open(PRICE);
        d2 = _commit(id2, d2);
        vm.expectRevert(abi.encodeWithSelector(IMarket.AlreadyCommitted.selector, id2));
        vm.prank(hubOwner);
        market.releaseDeal(id2, d2);
    }

    // ---- slot reuse -------------------------------------------------------------------------

    function test_closedSlotsAreReusedWithFreshIds() public {
        (uint256 a, IMarket.Deal memory da) = _open(PRICE);
        vm.prank(hubOwner);
        market.releaseDeal(a, da);
        (uint256 b, IMarket.Deal memory db) = _open(PRICE);
        assertEq(b & type(uint64).max, a & type(uint64).max, "same slot");
        assertTrue(a != b, "distinct ids");
        assertFalse(market.isOpen(a, da), "old id is dead");
        assertTrue(market.isOpen(b, db), "new deal open");
        vm.expectRevert(abi.encodeWithSelector(IMarket.UnknownDeal.selector, a));
        vm.prank(hubOwner);
        market.releaseDeal(a, da);
    }

    // ---- fuzz -------------------------------------------------------------------------------

    function testFuzz_lifecycle_timings(uint96 price, uint256 commitAfter, uint256 closeAfter)
        public
    {
        price = uint96(bound(price, 1, 1000e18));
        commitAfter = bound(commitAfter, 0, 2 hours);
        closeAfter = bound(closeAfter, 0, 3 days);
        (uint256 id, IMarket.Deal memory d) = _open(price);
        vm.warp(block.timestamp + commitAfter);
        uint256 hubBefore = snm.balanceOf(address(hub));
        uint256 buyerBefore = snm.balanceOf(buyer);
        if (block.timestamp > deadline) {
            vm.expectRevert(abi.encodeWithSelector(IMarket.DeadlinePassed.selector, deadline));
            vm.prank(hubOwner);
            market.commitResults(_one(id), _one(d), new bytes32[](1));
            vm.prank(buyer);
            market.cancelDeal(id, d);
            assertEq(snm.balanceOf(buyer) - buyerBefore, price, "refund");
            return;
        }
        d = _commit(id, d);
        vm.warp(block.timestamp + closeAfter);
        if (closeAfter <= CONFIRM_WINDOW) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    IMarket.ConfirmWindowOpen.selector, d.committedAt + CONFIRM_WINDOW
                )
            );
            market.settleDeals(_one(id), _one(d));
            _confirm(id, d);
        } else {
            market.settleDeals(_one(id), _one(d));
        }
        assertEq(snm.balanceOf(address(hub)) - hubBefore, price, "hub paid exactly the price");
        assertEq(snm.balanceOf(address(market)), 0, "nothing left in escrow");
    }

    function testFuzz_openDeals_escrowsSum(uint8 n, uint96 seed) public {
        n = uint8(bound(n, 1, 40));
        uint96[] memory prices = new uint96[](n);
        uint256 sum;
        for (uint256 i; i < n; ++i) {
            prices[i] = uint96(bound(uint256(keccak256(abi.encode(seed, i))), 1, 20e18));
            sum += prices[i];
        }
        vm.prank(buyer);
        market.openDeals(address(hub), prices, deadline);
        assertEq(snm.balanceOf(address(market)), sum, "escrow = sum of prices");
    }
}
