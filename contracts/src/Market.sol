// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IMarket} from "./interfaces/IMarket.sol";
import {IHubWallet} from "./interfaces/IHubWallet.sol";
import {ISNM} from "./interfaces/ISNM.sol";
import {IWhitelist} from "./interfaces/IWhitelist.sol";

/// @title Market
/// @notice Escrow for deals between buyers and hubs (see IMarket).
/// @dev Gas is what shapes the storage:
///      - a deal is one slot holding keccak256(id, terms); callers pass the terms back;
///      - a closed deal's slot joins a free list threaded through the slots themselves, and
///        the next deal reuses it: writing a non-zero slot costs ~5k gas instead of ~22k for
///        a fresh one (clearing it would only earn a refund capped at a fifth of the tx);
///      - batches pull the buyer's deposit once and pay each hub once per run of deals.
contract Market is IMarket {
    /// @dev A free slot holds FREE_TAG | next free slot (0 ends the list). The tag fills the
    ///      high 192 bits, so a free slot can never equal a deal hash in practice.
    bytes32 private constant FREE_TAG = bytes32(uint256(keccak256("sosna.market.free")) << 64);
    uint256 private constant SLOT_MASK = type(uint64).max;

    /// @dev Free-list head, slots ever used, deals ever opened: one word, written once per
    ///      batch.
    struct Head {
        uint64 free;
        uint64 slots;
        uint128 serial;
    }

    /// @inheritdoc IMarket
    address public immutable token;
    /// @inheritdoc IMarket
    address public immutable whitelist;
    /// @inheritdoc IMarket
    uint256 public immutable confirmWindow;

    Head private _head;
    mapping(uint256 slot => bytes32) private _slots;

    constructor(address token_, address whitelist_, uint256 confirmWindow_) {
        token = token_;
        whitelist = whitelist_;
        confirmWindow = confirmWindow_;
    }

    /// @inheritdoc IMarket
    function openDeal(address hub, uint96 price, uint40 deadline) external returns (uint256 id) {
        uint96[] memory prices = new uint96[](1);
        prices[0] = price;
        id = _open(hub, prices, deadline)[0];
    }

    /// @inheritdoc IMarket
    function openDeals(address hub, uint96[] calldata prices, uint40 deadline)
        external
        returns (uint256[] memory ids)
    {
        ids = _open(hub, prices, deadline);
    }

    /// @inheritdoc IMarket
    function commitResults(
        uint256[] calldata ids,
        Deal[] calldata deals,
        bytes32[] calldata digests
    ) external {
        uint256 n = ids.length;
        if (n == 0 || n != deals.length || n != digests.length) revert BadBatch();
        address hub = deals[0].hub;
        // One batch, one hub: ownership and activity are checked once.
        if (IHubWallet(hub).owner() != msg.sender) revert NotHubOwner(msg.sender);
        if (!IWhitelist(whitelist).isActive(hub)) revert HubNotActive(hub);
        uint40 now_ = uint40(block.timestamp);
        for (uint256 i; i < n; ++i) {
            Deal calldata d = deals[i];
            uint256 id = ids[i];
            _checkOpen(id, d);
            if (d.hub != hub) revert BadBatch();
            if (d.committedAt != 0) revert AlreadyCommitted(id);
            if (now_ > d.deadline) revert DeadlinePassed(d.deadline);
            _slots[id & SLOT_MASK] = _hash(id, d.buyer, hub, d.price, d.deadline, now_);
        }
        emit ResultsCommitted(hub, now_, ids, digests);
    }

    /// @inheritdoc IMarket
    function confirmDeals(uint256[] calldata ids, Deal[] calldata deals) external {
        _payHubs(ids, deals, Outcome.Confirmed);
    }

    /// @inheritdoc IMarket
    function settleDeals(uint256[] calldata ids, Deal[] calldata deals) external {
        _payHubs(ids, deals, Outcome.TimedOut);
    }

    /// @inheritdoc IMarket
    function cancelDeal(uint256 id, Deal calldata deal) external {
        _checkOpen(id, deal);
        if (msg.sender != deal.buyer) revert NotBuyer(msg.sender);
        if (deal.committedAt != 0) revert AlreadyCommitted(id);
        if (block.timestamp <= deal.deadline && IWhitelist(whitelist).isActive(deal.hub)) {
            revert CancelNotAllowed(id);
        }
        _refund(id, deal, Outcome.Cancelled);
    }

    /// @inheritdoc IMarket
    function releaseDeal(uint256 id, Deal calldata deal) external {
        _checkOpen(id, deal);
        if (IHubWallet(deal.hub).owner() != msg.sender) revert NotHubOwner(msg.sender);
        if (deal.committedAt != 0) revert AlreadyCommitted(id);
        _refund(id, deal, Outcome.Released);
    }

    /// @inheritdoc IMarket
    function isOpen(uint256 id, Deal calldata d) external view returns (bool) {
        return
            _slots[id & SLOT_MASK] == _hash(id, d.buyer, d.hub, d.price, d.deadline, d.committedAt);
    }

    /// @inheritdoc IMarket
    function hashDeal(uint256 id, Deal calldata d) external pure returns (bytes32) {
        return _hash(id, d.buyer, d.hub, d.price, d.deadline, d.committedAt);
    }

    /// @inheritdoc IMarket
    function dealCount() external view returns (uint256) {
        return _head.serial;
    }

    function _open(address hub, uint96[] memory prices, uint40 deadline)
        private
        returns (uint256[] memory ids)
    {
        uint256 n = prices.length;
        if (n == 0) revert BadBatch();
        if (deadline <= block.timestamp) revert InvalidTerms();
        if (!IWhitelist(whitelist).isActive(hub)) revert HubNotActive(hub);
        Head memory h = _head;
        ids = new uint256[](n);
        uint256 total;
        for (uint256 i; i < n; ++i) {
            uint96 price = prices[i];
            if (price == 0) revert InvalidTerms();
            total += price;
            uint256 slot = h.free;
            if (slot != 0) {
                // Masked to 64 bits, so the cast is exact.
                // forge-lint: disable-next-line(unsafe-typecast)
                h.free = uint64(uint256(_slots[slot]) & SLOT_MASK);
            } else {
                slot = ++h.slots;
            }
            uint256 id = (uint256(h.serial++) << 64) | slot;
            ids[i] = id;
            _slots[slot] = _hash(id, msg.sender, hub, price, deadline, 0);
        }
        _head = h;
        emit DealsOpened(msg.sender, hub, deadline, ids, prices);
        ISNM(token).transferFrom(msg.sender, address(this), total);
    }

    /// @dev Closes committed deals in favour of their hubs. Confirmed: the caller must be each
    ///      deal's buyer. TimedOut: anyone, once the buyer's confirmation window has passed.
    ///      Each run of consecutive deals with the same hub is paid in one transfer.
    function _payHubs(uint256[] calldata ids, Deal[] calldata deals, Outcome outcome) private {
        uint256 n = ids.length;
        if (n == 0 || n != deals.length) revert BadBatch();
        uint64 free = _head.free;
        address runHub = deals[0].hub;
        uint256 runAmount;
        for (uint256 i; i < n; ++i) {
            Deal calldata d = deals[i];
            uint256 id = ids[i];
            _checkOpen(id, d);
            if (d.committedAt == 0) revert NotCommitted(id);
            if (outcome == Outcome.Confirmed) {
                if (msg.sender != d.buyer) revert NotBuyer(msg.sender);
            } else {
                uint256 until = uint256(d.committedAt) + confirmWindow;
                if (block.timestamp <= until) revert ConfirmWindowOpen(until);
            }
            free = _release(id, free);
            if (d.hub != runHub) {
                ISNM(token).transfer(runHub, runAmount);
                (runHub, runAmount) = (d.hub, 0);
            }
            runAmount += d.price;
        }
        _head.free = free;
        emit DealsClosed(outcome, ids);
        ISNM(token).transfer(runHub, runAmount);
    }

    function _refund(uint256 id, Deal calldata deal, Outcome outcome) private {
        _head.free = _release(id, _head.free);
        uint256[] memory ids = new uint256[](1);
        ids[0] = id;
        emit DealsClosed(outcome, ids);
        ISNM(token).transfer(deal.buyer, deal.price);
    }

    /// @dev Pushes the deal's slot onto the free list whose head is `free`; returns the new
    ///      head. The slot stays non-zero, so reusing it is cheap.
    function _release(uint256 id, uint64 free) private returns (uint64) {
        // Masked to 64 bits, so the cast is exact.
        // forge-lint: disable-next-line(unsafe-typecast)
        uint64 slot = uint64(id & SLOT_MASK);
        _slots[slot] = FREE_TAG | bytes32(uint256(free));
        return slot;
    }

    function _checkOpen(uint256 id, Deal calldata d) private view {
        if (_slots[id & SLOT_MASK] != _hash(id, d.buyer, d.hub, d.price, d.deadline, d.committedAt))
        {
            revert UnknownDeal(id);
        }
    }

    /// @dev keccak256(abi.encode(id, buyer, hub, price, deadline, committedAt)), hashed in
    ///      scratch memory so that large batches do not grow memory. Binding the unique id
    ///      makes a stale id useless once its slot has been reused.
    function _hash(
        uint256 id,
        address buyer,
        address hub,
        uint96 price,
        uint40 deadline,
        uint40 committedAt
    ) private pure returns (bytes32 h) {
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, id)
            mstore(add(p, 0x20), buyer)
            mstore(add(p, 0x40), hub)
            mstore(add(p, 0x60), price)
            mstore(add(p, 0x80), deadline)
            mstore(add(p, 0xa0), committedAt)
            h := keccak256(p, 0xc0)
        }
    }
}
